//! The image's list of kernel modules: `/etc/tessella/modules`.
//!
//! One absolute module path a line, in load order (dependencies first; the
//! image builder derives the order from each module's `depends=`). A line may
//! end with the word `optional`: that module may fail to load (logged and
//! ignored), as `tdx-guest` does off a TD. Blank lines and lines starting
//! with `#` are skipped.
//!
//! ```text
//! /lib/modules/6.12.95+deb12-amd64/kernel/net/core/failover.ko.xz
//! /lib/modules/6.12.95+deb12-amd64/kernel/drivers/virt/coco/tdx-guest/tdx-guest.ko.xz optional
//! ```

use std::path::PathBuf;

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// The module file (`.ko` or compressed `.ko.xz`).
    pub path: PathBuf,
    /// A failure to load it is logged, not fatal.
    pub optional: bool,
    /// 1-based line in the modules file, for messages.
    pub line: usize,
}

/// A line of the modules file that is not a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ModulesFileError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Parses the modules file's text.
pub fn parse_modules(text: &str) -> Result<Vec<ModuleEntry>, ModulesFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let path = words.next().unwrap_or_default();
        let optional = match (words.next(), words.next()) {
            (None, _) => false,
            (Some("optional"), None) => true,
            (Some(word), None) => {
                return Err(ModulesFileError {
                    line,
                    problem: format!(
                        "unknown flag {word:?} after {path} (the only flag is \"optional\")"
                    ),
                });
            }
            (Some(_), Some(_)) => {
                return Err(ModulesFileError {
                    line,
                    problem: format!(
                        "expected \"PATH\" or \"PATH optional\", found {trimmed:?} (paths cannot contain spaces)"
                    ),
                });
            }
        };
        if !path.starts_with('/') {
            return Err(ModulesFileError {
                line,
                problem: format!("{path:?} is not an absolute path"),
            });
        }
        if !(path.ends_with(".ko") || path.ends_with(".ko.xz")) {
            return Err(ModulesFileError {
                line,
                problem: format!("{path:?} is not a kernel module (.ko or .ko.xz)"),
            });
        }
        out.push(ModuleEntry {
            path: PathBuf::from(path),
            optional,
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_order_flags_and_comments() {
        let text = "# network\n/m/failover.ko.xz\n\n  /m/net_failover.ko.xz  \n/m/tdx-guest.ko.xz optional\n/m/plain.ko\n";
        let m = parse_modules(text).expect("parse");
        let got: Vec<_> = m
            .iter()
            .map(|e| (e.path.to_str().unwrap_or(""), e.optional, e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("/m/failover.ko.xz", false, 2),
                ("/m/net_failover.ko.xz", false, 4),
                ("/m/tdx-guest.ko.xz", true, 5),
                ("/m/plain.ko", false, 6),
            ]
        );
        assert!(parse_modules("").expect("empty").is_empty());
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            ("/m/a.ko.xz\nfailover.ko.xz\n", 2, "\"failover.ko.xz\" is not an absolute path"),
            ("/m/a.ko.xz maybe\n", 1, "unknown flag \"maybe\" after /m/a.ko.xz (the only flag is \"optional\")"),
            ("/m/a.ko.xz optional extra\n", 1, "expected \"PATH\" or \"PATH optional\", found \"/m/a.ko.xz optional extra\" (paths cannot contain spaces)"),
            ("/m/a.txt\n", 1, "\"/m/a.txt\" is not a kernel module (.ko or .ko.xz)"),
        ];
        for (text, line, problem) in cases {
            let e = parse_modules(text).expect_err(text);
            assert_eq!(e.line, line, "{text}");
            assert_eq!(e.problem, problem);
            assert_eq!(e.to_string(), format!("line {line}: {problem}"));
        }
    }
}
