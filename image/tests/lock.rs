//! Lock file parsing and validation.

use tessella_image::{LockError, LockFile, TakeKind};

const LOCK: &str = include_str!("../tessella-image.lock");

fn invalid_field(e: LockError) -> String {
    match e {
        LockError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn the_shipped_lock_pins_what_the_design_says() {
    let lock = LockFile::parse(LOCK).expect("shipped lock");
    // Values from the project brief / tdx-facts.md, not from our own code.
    let kernel = &lock.packages[0];
    assert_eq!(kernel.name, "linux-image-6.12.95+deb12-amd64");
    assert_eq!(kernel.version, "6.12.95-1~bpo12+1");
    assert_eq!(
        kernel.sha256,
        "5e524b782be67cb0d6a2e7b51816a2ac519e573ef7324b9a63a4124365653ecc"
    );
    assert_eq!(kernel.size, 106_422_608);
    let ovmf = &lock.packages[1];
    assert_eq!(ovmf.name, "ovmf");
    assert_eq!(ovmf.version, "2025.02-8+deb13u1");
    assert_eq!(
        ovmf.sha256,
        "78e0d54df11fc77406cb7a0bc9a39e5bca6d1cbe06556b91d9a73491c52decdf"
    );
    assert_eq!(ovmf.size, 5_779_964);
    assert_eq!(lock.apt.mirror, "http://deb.debian.org/debian");
    assert_eq!(
        lock.apt.signed_by,
        "/usr/share/keyrings/debian-archive-keyring.gpg"
    );
    let order: Vec<String> = lock
        .modules()
        .iter()
        .map(|m| format!("{}{}", m.basename, if m.optional { "?" } else { "" }))
        .collect();
    assert_eq!(
        order,
        [
            "failover.ko.xz",
            "net_failover.ko.xz",
            "virtio_net.ko.xz",
            "configfs.ko.xz",
            "tsm.ko.xz",
            "tdx-guest.ko.xz?",
            "vsock.ko.xz",
            "vmw_vsock_virtio_transport_common.ko.xz",
            "vmw_vsock_virtio_transport.ko.xz",
            "qemu_fw_cfg.ko.xz",
        ]
    );
    let dests: Vec<String> = lock
        .packages
        .iter()
        .flat_map(|p| &p.take)
        .filter(|t| t.kind != TakeKind::Module)
        .map(|t| format!("{} -> {}", t.path, t.dest()))
        .collect();
    assert_eq!(
        dests,
        [
            "boot/vmlinuz-6.12.95+deb12-amd64 -> vmlinuz",
            "usr/share/ovmf/OVMF.fd -> OVMF.fd"
        ]
    );
    assert_eq!(
        kernel.deb_file_name(),
        "linux-image-6.12.95+deb12-amd64_6.12.95-1~bpo12+1_amd64.deb"
    );
    let sources = lock.apt.sources_list();
    assert!(sources.contains(
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://deb.debian.org/debian bookworm-backports main\n"
    ));
}

#[test]
fn a_short_hash_is_refused_naming_the_package_field() {
    let text = LOCK.replacen(
        "5e524b782be67cb0d6a2e7b51816a2ac519e573ef7324b9a63a4124365653ecc",
        "5e524b782be67cb0",
        1,
    );
    let e = LockFile::parse(&text).expect_err("short hash");
    assert!(e.to_string().contains("64 hex digits"), "{e}");
    assert_eq!(invalid_field(e), "package[0].sha256");
}

#[test]
fn an_uppercase_hash_is_refused() {
    let text = LOCK.replacen(
        "78e0d54df11fc77406cb7a0bc9a39e5bca6d1cbe06556b91d9a73491c52decdf",
        "E73D3D1A8799F7F6FC16B73501D913EDCDD86237556FBFF30693E747E6DC262E",
        1,
    );
    assert_eq!(
        invalid_field(LockFile::parse(&text).expect_err("uppercase")),
        "package[1].sha256"
    );
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    for (anchor, extra) in [
        ("kernel_release =", "colour = \"blue\"\nkernel_release ="),
        ("mirror =", "mirrors = []\nmirror ="),
        ("suite = \"trixie\"", "suite = \"trixie\"\nsha512 = \"00\""),
        ("kind = \"firmware\"", "kind = \"firmware\"\ndest = \"x\""),
    ] {
        let text = LOCK.replacen(anchor, extra, 1);
        assert_ne!(text, LOCK, "anchor {anchor} not found");
        match LockFile::parse(&text) {
            Err(LockError::Syntax(msg)) => assert!(msg.contains("unknown field"), "{msg}"),
            other => panic!("{anchor}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn other_versions_and_formats_are_refused() {
    let e = LockFile::parse(&LOCK.replacen("version = 1", "version = 2", 1)).expect_err("v2");
    assert_eq!(invalid_field(e), "version");
    let e = LockFile::parse(&LOCK.replacen(
        "format = \"tessella-image-lock\"",
        "format = \"other\"",
        1,
    ))
    .expect_err("format");
    assert_eq!(invalid_field(e), "format");
}

#[test]
fn paths_that_escape_or_misplace_files_are_refused() {
    let e = LockFile::parse(&LOCK.replacen(
        "path = \"usr/share/ovmf/OVMF.fd\"",
        "path = \"usr/share/../../etc/shadow\"",
        1,
    ))
    .expect_err("dotdot");
    assert_eq!(invalid_field(e), "package[1].take[0].path");
    let e = LockFile::parse(&LOCK.replacen(
        "path = \"usr/share/ovmf/OVMF.fd\"",
        "path = \"/usr/share/ovmf/OVMF.fd\"",
        1,
    ))
    .expect_err("absolute");
    assert_eq!(invalid_field(e), "package[1].take[0].path");
    // A module outside /lib/modules/<kernel_release>/.
    let e = LockFile::parse(&LOCK.replacen(
        "lib/modules/6.12.95+deb12-amd64/kernel/net/core/failover.ko.xz",
        "lib/modules/6.1.0-1-amd64/kernel/net/core/failover.ko.xz",
        1,
    ))
    .expect_err("other release");
    assert_eq!(invalid_field(e), "package[0].take[1].path");
}

#[test]
fn exactly_one_kernel_and_firmware_and_unique_modules() {
    let e = LockFile::parse(&LOCK.replacen("kind = \"firmware\"", "kind = \"module\"", 1))
        .expect_err("no firmware");
    // The OVMF path is not under lib/modules: refused as a module first.
    assert_eq!(invalid_field(e), "package[1].take[0].path");
    let e = LockFile::parse(&LOCK.replacen("kind = \"kernel\"", "kind = \"firmware\"", 1))
        .expect_err("two firmwares");
    assert!(
        e.to_string().contains("exactly one kind = \"kernel\""),
        "{e}"
    );
    let e = LockFile::parse(&LOCK.replacen(
        "drivers/net/net_failover.ko.xz",
        "drivers/net/failover.ko.xz",
        1,
    ))
    .expect_err("duplicate basename");
    assert!(
        e.to_string()
            .contains("two modules are named failover.ko.xz"),
        "{e}"
    );
    let e = LockFile::parse(&LOCK.replacen(
        "kind = \"firmware\"",
        "kind = \"firmware\"\noptional = true",
        1,
    ))
    .expect_err("optional firmware");
    assert_eq!(invalid_field(e), "package[1].take[0].optional");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = LockFile::load(&dir.path().join("nope.lock")).expect_err("missing");
    assert!(matches!(e, LockError::Read { .. }), "{e:?}");
}
