//! A diagnostic for the measurement self-check: with `tessella.probe=boot-params`
//! on the kernel command line, PID 1 prints the Linux setup header as the
//! kernel received it (bytes 0x1f1..0x290 of `/sys/kernel/boot_params/data`),
//! so a test can compare it with its model of QEMU's setup-header patch (which
//! RTMR1's kernel hash covers).

use std::ops::Range;

/// The command-line word that asks for the probe.
pub const BOOT_PARAMS_FLAG: &str = "tessella.probe=boot-params";

/// The kernel's copy of `struct boot_params`.
pub const BOOT_PARAMS_PATH: &str = "/sys/kernel/boot_params/data";

/// The kernel command line.
pub const CMDLINE_PATH: &str = "/proc/cmdline";

/// The setup header inside `boot_params` (offset 0x1f1 up to 0x290).
pub const SETUP_HEADER: Range<usize> = 0x1f1..0x290;

/// The console line's first word; the hex follows after `boot-params `.
pub const PROBE_PREFIX: &str = "tessella-probe boot-params";

/// Whether `cmdline` asks for the probe (as a whole word).
pub fn wants_boot_params(cmdline: &str) -> bool {
    cmdline
        .split_ascii_whitespace()
        .any(|w| w == BOOT_PARAMS_FLAG)
}

/// The console line for `boot_params` bytes, or why it cannot be made.
pub fn boot_params_line(boot_params: &[u8]) -> Result<String, String> {
    let header = boot_params.get(SETUP_HEADER).ok_or_else(|| {
        format!(
            "{BOOT_PARAMS_PATH} has {} bytes, fewer than the setup header's end {:#x}",
            boot_params.len(),
            SETUP_HEADER.end
        )
    })?;
    Ok(format!("{PROBE_PREFIX} {}", hex::encode(header)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_is_a_whole_word() {
        assert!(wants_boot_params(
            "console=ttyS0 tessella.probe=boot-params panic=-1"
        ));
        assert!(wants_boot_params("tessella.probe=boot-params\n"));
        assert!(!wants_boot_params("console=ttyS0"));
        assert!(!wants_boot_params("xtessella.probe=boot-params"));
        assert!(!wants_boot_params("tessella.probe=boot-paramsx"));
    }

    #[test]
    fn line_is_the_setup_header() {
        // A 4 KiB boot_params page (its size in the kernel's ABI) where each
        // byte is its offset mod 256: the line must start at 0x1f1 and hold
        // 0x290 - 0x1f1 = 159 bytes.
        let page: Vec<u8> = (0..4096).map(|i| (i % 256) as u8).collect();
        let line = boot_params_line(&page).expect("line");
        let hex = line
            .strip_prefix("tessella-probe boot-params ")
            .expect("prefix");
        assert_eq!(hex.len(), 2 * 159);
        assert!(hex.starts_with("f1f2f3"), "{hex}");
        assert!(hex.ends_with("8d8e8f"), "{hex}");
        let e = boot_params_line(&page[..0x28f]).expect_err("short");
        assert!(e.contains("fewer than the setup header's end 0x290"), "{e}");
    }
}
