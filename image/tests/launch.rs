//! The launch scripts: syntax, MRCONFIGID computation, RAM guard and the
//! QEMU command line, run against a fake QEMU that prints its arguments.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use tessella_image::{dev_script, tdx_script, VmShape};

const VM: VmShape = VmShape {
    ram_mib: 1024,
    vcpus: 2,
};

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// An image dir with both scripts, a cmdline and a fake QEMU.
fn image_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_exec(&dir.path().join("launch-tdx.sh"), &tdx_script(VM));
    write_exec(&dir.path().join("launch-dev.sh"), &dev_script(VM));
    std::fs::write(dir.path().join("cmdline"), "console=ttyS0 panic=-1").expect("cmdline");
    // One argument per line.
    write_exec(
        &dir.path().join("fake-qemu"),
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
    );
    dir
}

fn run(dir: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join(script))
        .args(args)
        .env("QEMU", dir.join("fake-qemu"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn after<'a>(args: &'a str, flag: &str) -> &'a str {
    let lines: Vec<&str> = args.lines().collect();
    let i = lines
        .iter()
        .position(|l| *l == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args}"));
    lines[i + 1]
}

#[test]
fn both_scripts_pass_bash_n_and_shellcheck_when_present() {
    let dir = image_dir();
    for s in ["launch-tdx.sh", "launch-dev.sh"] {
        let st = Command::new("bash")
            .arg("-n")
            .arg(dir.path().join(s))
            .status()
            .expect("bash");
        assert!(st.success(), "bash -n {s}");
        if let Ok(out) = Command::new("shellcheck").arg(dir.path().join(s)).output() {
            assert!(
                out.status.success(),
                "shellcheck {s}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

#[test]
fn the_tdx_script_passes_base64_sha384_of_the_config_as_mrconfigid() {
    let dir = image_dir();
    let config = dir.path().join("node.toml");
    let text = b"data_dir = \"/var/lib/tessella\"\n[identity]\nmode = \"tdx\"\n";
    std::fs::write(&config, text).expect("config");
    let (code, args, err) = run(
        dir.path(),
        "launch-tdx.sh",
        &[config.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // Independent: ring SHA-384 and the base64 crate.
    let digest = ring::digest::digest(&ring::digest::SHA384, text);
    let expected = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let object: serde_json::Value =
        serde_json::from_str(after(&args, "-object")).expect("tdx object is JSON");
    assert_eq!(object["qom-type"], "tdx-guest");
    assert_eq!(object["mrconfigid"], expected.as_str());
    assert_eq!(object["quote-generation-socket"]["type"], "vsock");
    assert_eq!(object["quote-generation-socket"]["cid"], "2");
    assert_eq!(object["quote-generation-socket"]["port"], "4050");
    assert_eq!(
        after(&args, "-machine"),
        "q35,kernel-irqchip=split,confidential-guest-support=tdx,hpet=off"
    );
    assert_eq!(after(&args, "-accel"), "kvm");
    assert_eq!(after(&args, "-cpu"), "host");
    assert_eq!(after(&args, "-m"), "1024M");
    assert_eq!(after(&args, "-smp"), "2");
    assert_eq!(after(&args, "-append"), "console=ttyS0 panic=-1");
    assert!(after(&args, "-bios").ends_with("/OVMF.fd"));
    assert_eq!(
        after(&args, "-fw_cfg"),
        format!("name=opt/tessella/node.toml,file={}", config.display())
    );
    let netdev = after(&args, "-netdev");
    assert!(
        netdev.contains("hostfwd=tcp:127.0.0.1:7300-:7300"),
        "{netdev}"
    );
    assert!(netdev.contains("hostfwd=udp::7946-:7946"), "{netdev}");
}

#[test]
fn the_tdx_script_refuses_another_ram_size_unless_forced() {
    let dir = image_dir();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "x = 1\n").expect("config");
    let c = config.to_str().expect("utf8");
    let (code, _, err) = run(dir.path(), "launch-tdx.sh", &[c], &[("RAM_MIB", "2048")]);
    assert_eq!(code, 2);
    assert!(err.contains("FORCE_RAM=1"), "{err}");
    let (code, args, err) = run(
        dir.path(),
        "launch-tdx.sh",
        &[c],
        &[("RAM_MIB", "2048"), ("FORCE_RAM", "1")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(after(&args, "-m"), "2048M");
    // No config, or a missing one: usage errors.
    assert_eq!(run(dir.path(), "launch-tdx.sh", &[], &[]).0, 2);
    assert_eq!(
        run(dir.path(), "launch-tdx.sh", &["/nonexistent"], &[]).0,
        2
    );
}

#[test]
fn the_dev_script_uses_tcg_without_tdx_and_takes_ports_from_env() {
    let dir = image_dir();
    let (code, args, err) = run(
        dir.path(),
        "launch-dev.sh",
        &[],
        &[("ADMIN_PORT", "17300"), ("QUIC_PORT", "17946")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(after(&args, "-accel"), "tcg");
    assert_eq!(after(&args, "-machine"), "q35");
    assert!(!args.contains("tdx"), "{args}");
    assert!(!args.lines().any(|l| l == "-bios"), "no OVMF by default");
    assert!(!args.lines().any(|l| l == "-fw_cfg"), "no config given");
    let netdev = after(&args, "-netdev");
    assert!(
        netdev.contains("hostfwd=tcp:127.0.0.1:17300-:7300"),
        "{netdev}"
    );
    assert!(netdev.contains("hostfwd=udp::17946-:7946"), "{netdev}");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "x = 1\n").expect("config");
    let (code, args, err) = run(
        dir.path(),
        "launch-dev.sh",
        &[config.to_str().expect("utf8")],
        &[("USE_OVMF", "1")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(after(&args, "-bios").ends_with("/OVMF.fd"));
    assert!(after(&args, "-fw_cfg").starts_with("name=opt/tessella/node.toml,file="));
}
