//! The static, reproducible build of `tessella-node` that becomes `/init`.
//!
//! `cargo build --release --locked --target x86_64-unknown-linux-musl -p
//! tessella-node` with:
//! - `CARGO_ENCODED_RUSTFLAGS` remapping the source dir to `/tessella`,
//!   `CARGO_HOME` to `/cargo`, the target dir to `/target` and the toolchain
//!   sysroot to `/rustc-sysroot`,
//!   so no build-host path reaches the binary;
//! - `SOURCE_DATE_EPOCH` = the commit time of `HEAD` (0 outside git);
//! - `CARGO_TARGET_DIR` inside the build's own work dir: two builds share only
//!   the cargo registry;
//! - `CC_x86_64_unknown_linux_musl=gcc` (ring and blake3 compile C; gcc with
//!   Rust's self-contained musl CRT links them statically);
//! - the workspace's release profile (codegen-units = 1, panic = abort, strip).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::error::BuildError;

/// The target the node is built for.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// One static build of the node.
#[derive(Debug, Clone)]
pub struct NodeBuild {
    /// The workspace root to build.
    pub source_dir: PathBuf,
    /// `CARGO_TARGET_DIR` for this build.
    pub target_dir: PathBuf,
    /// `CARGO_HOME` (remapped to `/cargo`).
    pub cargo_home: PathBuf,
    /// The toolchain sysroot (remapped to `/rustc-sysroot`), if known.
    pub sysroot: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH` for the build.
    pub source_date_epoch: u64,
    /// Where cargo's output is logged.
    pub log: PathBuf,
}

/// `$CARGO_HOME`, else `$HOME/.cargo`.
pub fn cargo_home() -> PathBuf {
    if let Some(h) = std::env::var_os("CARGO_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo"))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn tool_output(program: &str, args: &[&str]) -> Result<String, BuildError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| BuildError::Tool {
            tool: program.to_string(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            tool: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `rustc -V`, recorded in `image.json`.
pub fn rustc_version() -> Result<String, BuildError> {
    tool_output("rustc", &["-V"])
}

/// The active toolchain's sysroot.
pub fn sysroot() -> Option<PathBuf> {
    tool_output("rustc", &["--print", "sysroot"])
        .ok()
        .map(PathBuf::from)
}

/// Fails with instructions when the musl target's standard library is not
/// installed (checked with `rustup target list --installed` when rustup
/// exists, else by looking in the sysroot).
pub fn check_musl_target() -> Result<(), BuildError> {
    let installed = match tool_output("rustup", &["target", "list", "--installed"]) {
        Ok(list) => list.lines().any(|l| l.trim() == MUSL_TARGET),
        Err(_) => sysroot().is_some_and(|s| s.join("lib/rustlib").join(MUSL_TARGET).is_dir()),
    };
    if installed {
        Ok(())
    } else {
        Err(BuildError::MissingTarget(MUSL_TARGET.to_string()))
    }
}

impl NodeBuild {
    /// The rustc flags, in order.
    pub fn rustflags(&self) -> Vec<String> {
        let mut flags = vec![
            format!(
                "--remap-path-prefix={}=/tessella",
                self.source_dir.display()
            ),
            format!("--remap-path-prefix={}=/cargo", self.cargo_home.display()),
            format!("--remap-path-prefix={}=/target", self.target_dir.display()),
        ];
        if let Some(sysroot) = &self.sysroot {
            flags.push(format!(
                "--remap-path-prefix={}=/rustc-sysroot",
                sysroot.display()
            ));
        }
        flags
    }

    /// The path of the built binary.
    pub fn binary_path(&self) -> PathBuf {
        self.target_dir
            .join(MUSL_TARGET)
            .join("release")
            .join("tessella-node")
    }

    /// The cargo command, fully configured.
    pub fn command(&self) -> Command {
        let mut cmd =
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
        cmd.args([
            "build",
            "--release",
            "--locked",
            "--target",
            MUSL_TARGET,
            "-p",
            "tessella-node",
        ])
        .current_dir(&self.source_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", self.rustflags().join("\u{1f}"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        .env("CARGO_TARGET_DIR", &self.target_dir)
        .env("CARGO_HOME", &self.cargo_home)
        .env("CC_x86_64_unknown_linux_musl", "gcc")
        .env("SOURCE_DATE_EPOCH", self.source_date_epoch.to_string())
        .env("CARGO_TERM_COLOR", "never")
        .env("CARGO_TERM_PROGRESS_WHEN", "never");
        cmd
    }

    /// Runs the build, logging cargo's output to [`NodeBuild::log`] and
    /// passing each stderr line to `on_line`. Returns the checked static
    /// binary's path.
    pub fn run(&self, mut on_line: impl FnMut(&str)) -> Result<PathBuf, BuildError> {
        check_musl_target()?;
        if let Some(parent) = self.log.parent() {
            std::fs::create_dir_all(parent)
                .map_err(BuildError::io(format!("creating {}", parent.display())))?;
        }
        let mut log = std::fs::File::create(&self.log)
            .map_err(BuildError::io(format!("creating {}", self.log.display())))?;
        let stdout_log = log
            .try_clone()
            .map_err(BuildError::io("duplicating the log handle"))?;
        let mut child = self
            .command()
            .stdout(Stdio::from(stdout_log))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BuildError::Tool {
                tool: "cargo".into(),
                message: e.to_string(),
            })?;
        let mut last = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines() {
                let line = line.map_err(BuildError::io("reading cargo's output"))?;
                writeln!(log, "{line}").map_err(BuildError::io("writing the build log"))?;
                on_line(&line);
                last.push(line);
                if last.len() > 12 {
                    last.remove(0);
                }
            }
        }
        let status = child.wait().map_err(BuildError::io("waiting for cargo"))?;
        if !status.success() {
            return Err(BuildError::Tool {
                tool: "cargo build".into(),
                message: format!("{status}; log: {}\n{}", self.log.display(), last.join("\n")),
            });
        }
        let binary = self.binary_path();
        let bytes = std::fs::read(&binary)
            .map_err(BuildError::io(format!("reading {}", binary.display())))?;
        crate::elf::check_static(&bytes).map_err(|source| BuildError::Elf {
            path: binary.display().to_string(),
            source,
        })?;
        Ok(binary)
    }
}
