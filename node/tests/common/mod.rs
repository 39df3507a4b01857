//! Shared by the tests that run the `tessella-node` binary.

use std::process::Command;

/// Runs `tessella-node` with `args` and extra `envs`; returns its exit code and
/// stderr, and fails the test if it panicked.
pub fn tessella_node(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessella-node"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tessella-node");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().expect("exit code"), stderr)
}
