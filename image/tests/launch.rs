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

/// Every `-fw_cfg` value, in order.
fn fw_cfg_args(args: &str) -> Vec<&str> {
    let lines: Vec<&str> = args.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "-fw_cfg")
        .map(|w| w[1])
        .collect()
}

fn sha384_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA384, bytes))
}

#[test]
fn deployment_files_go_to_fw_cfg_under_their_base_names() {
    let dir = image_dir();
    let sub = dir.path().join("deploy");
    std::fs::create_dir(&sub).expect("dir");
    let policy = sub.join("policy.json");
    let issuers = sub.join("issuers.json");
    std::fs::write(&policy, b"{\"policy\": 1}\n").expect("policy");
    std::fs::write(&issuers, b"[]\n").expect("issuers");
    // Independent: ring's SHA-384 of the bytes written.
    let policy_sha = sha384_hex(b"{\"policy\": 1}\n");
    let issuers_sha = sha384_hex(b"[]\n");
    // The config pins the policy (upper case) but not the issuers.
    let config = dir.path().join("prod.toml");
    std::fs::write(
        &config,
        format!(
            "[guest.files]\n\"policy.json\" = \"{}\"\n",
            policy_sha.to_ascii_uppercase()
        ),
    )
    .expect("config");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let (code, args, err) = run(
        dir.path(),
        "launch-tdx.sh",
        &[&path(&config), &path(&policy), &path(&issuers)],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fw_cfg_args(&args),
        [
            format!("name=opt/tessella/node.toml,file={}", config.display()),
            format!(
                "name=opt/tessella/files/policy.json,file={}",
                policy.display()
            ),
            format!(
                "name=opt/tessella/files/issuers.json,file={}",
                issuers.display()
            ),
        ]
    );
    // Each file's digest is printed for the operator to pin.
    assert!(
        err.contains(&format!(
            "launch-tdx.sh: file {} as fw_cfg opt/tessella/files/policy.json, sha384 {policy_sha}",
            policy.display()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("sha384 {issuers_sha}")), "{err}");
    // A digest the config does not mention is warned about, not refused.
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains(&format!("\"issuers.json\" = \"{issuers_sha}\"")),
        "{err}"
    );
    // The -fw_cfg options come before the network options, after the config.
    let lines: Vec<&str> = args.lines().collect();
    let netdev = lines.iter().position(|l| *l == "-netdev").expect("netdev");
    let last_fw_cfg = lines.iter().rposition(|l| *l == "-fw_cfg").expect("fw_cfg");
    assert!(last_fw_cfg < netdev);

    // The dev script takes the same FILE arguments after its config.
    let (code, args, err) = run(
        dir.path(),
        "launch-dev.sh",
        &[&path(&config), &path(&policy)],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fw_cfg_args(&args),
        [
            format!("name=opt/tessella/node.toml,file={}", config.display()),
            format!(
                "name=opt/tessella/files/policy.json,file={}",
                policy.display()
            ),
        ]
    );
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn bad_deployment_files_are_refused() {
    let dir = image_dir();
    let config = dir.path().join("prod.toml");
    std::fs::write(&config, "x = 1\n").expect("config");
    let c = config.to_str().expect("utf8").to_string();
    let make = |name: &str, bytes: &[u8]| {
        let sub = dir.path().join(format!("d{}", name.len()));
        std::fs::create_dir_all(&sub).expect("dir");
        let p = sub.join(name);
        std::fs::write(&p, bytes).expect("file");
        p.to_str().expect("utf8").to_string()
    };
    let ok = make("ok.json", b"{}");
    let longest = make(&"n".repeat(36), b"{}");
    for script in ["launch-tdx.sh", "launch-dev.sh"] {
        let (code, _, err) = run(dir.path(), script, &[&c, &ok, &longest], &[]);
        assert_eq!(code, 0, "{script}: {err}");
        let refused = |args: &[&str], needle: &str| {
            let mut all = vec![c.as_str()];
            all.extend_from_slice(args);
            let (code, args, err) = run(dir.path(), script, &all, &[]);
            assert_eq!(code, 2, "{script} {all:?}: {err}");
            assert!(err.contains(needle), "{script} {all:?}: {err}");
            assert!(args.is_empty(), "QEMU did not run");
        };
        refused(
            &[&make(&"n".repeat(37), b"{}")],
            "must be 1 to 36 characters",
        );
        refused(
            &[&make("with space.json", b"{}")],
            "must be 1 to 36 characters",
        );
        refused(&[&make("é.json", b"{}")], "must be 1 to 36 characters");
        refused(&[&make("a=b", b"{}")], "must be 1 to 36 characters");
        refused(&[&make("a,b", b"{}")], "must not contain a comma");
        refused(
            &[&format!("{}/nonexistent.json", dir.path().display())],
            "no file ",
        );
        refused(&[dir.path().to_str().expect("utf8")], "no file ");
        let other_ok = make(&format!("{}x", "o".repeat(7)), b"{}");
        let dup = {
            let sub = dir.path().join("dup");
            std::fs::create_dir_all(&sub).expect("dir");
            let p = sub.join("ok.json");
            std::fs::write(&p, b"[]").expect("file");
            p.to_str().expect("utf8").to_string()
        };
        refused(&[&ok, &other_ok, &dup], "two files are named ok.json");
        // The guest's bounds: 1 MiB per file, 16 files.
        let big = make("big.json", &vec![b' '; 1024 * 1024 + 1]);
        refused(
            &[&big],
            "is 1048577 bytes: the guest accepts at most 1048576",
        );
        let many: Vec<&str> = std::iter::repeat_n(ok.as_str(), 17).collect();
        refused(&many, "17 files: the guest accepts at most 16");
    }
}
