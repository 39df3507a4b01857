//! Fetch verification against fake downloads: no network, no real apt.

use std::cell::Cell;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tessella_image::{
    extract_from_tar, fetch_package, AptGet, AptSource, Cache, Downloader, FetchError,
    FetchOutcome, LockedPackage, Take, TakeKind,
};

/// Puts fixed bytes into the download dir under apt's file name, and counts calls.
struct FakeDownload {
    bytes: Vec<u8>,
    calls: Cell<usize>,
}

impl Downloader for FakeDownload {
    fn download(&self, package: &LockedPackage, dest: &Path) -> Result<(), FetchError> {
        self.calls.set(self.calls.get() + 1);
        std::fs::write(dest.join(package.deb_file_name()), &self.bytes).map_err(|source| {
            FetchError::Io {
                what: "fake".into(),
                source,
            }
        })
    }
}

/// The SHA-256 of `bytes`, computed with `sha256sum` (independent of ring).
fn sha256sum(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, bytes).expect("write");
    let out = std::process::Command::new("sha256sum")
        .arg(&f)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

fn package(bytes: &[u8]) -> LockedPackage {
    LockedPackage {
        name: "fake".into(),
        version: "1.0-1".into(),
        arch: "all".into(),
        suite: "bookworm".into(),
        sha256: sha256sum(bytes),
        size: bytes.len() as u64,
        take: Vec::new(),
    }
}

#[test]
fn a_matching_download_is_accepted_and_then_reused_from_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path());
    let bytes = b"the pinned package".to_vec();
    let pkg = package(&bytes);
    let fake = FakeDownload {
        bytes: bytes.clone(),
        calls: Cell::new(0),
    };
    let (path, outcome) = fetch_package(&cache, &pkg, &fake).expect("match");
    assert_eq!(outcome, FetchOutcome::Downloaded);
    assert_eq!(path, cache.deb_path(&pkg));
    assert_eq!(std::fs::read(&path).expect("cached"), bytes);
    // Second run: no download (an offline re-run works).
    let (again, outcome) = fetch_package(&cache, &pkg, &fake).expect("cached");
    assert_eq!(outcome, FetchOutcome::Cached);
    assert_eq!(again, path);
    assert_eq!(fake.calls.get(), 1);
}

#[test]
fn a_mismatching_download_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path());
    let pinned = b"the pinned package".to_vec();
    let served = b"the PINNED package".to_vec(); // same size, other bytes
    let pkg = package(&pinned);
    let fake = FakeDownload {
        bytes: served.clone(),
        calls: Cell::new(0),
    };
    let e = fetch_package(&cache, &pkg, &fake).expect_err("mismatch");
    match &e {
        FetchError::HashMismatch {
            package,
            expected,
            actual,
        } => {
            assert_eq!(package, "fake=1.0-1");
            assert_eq!(*expected, sha256sum(&pinned));
            assert_eq!(*actual, sha256sum(&served));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("fake=1.0-1") && msg.contains(&sha256sum(&served)),
        "{msg}"
    );
    assert!(
        !cache.deb_path(&pkg).exists(),
        "a refused file must not be cached"
    );
    // Nothing left in the download area either.
    let leftovers: Vec<_> = walk(&dir.path().join("tmp"));
    assert!(leftovers.is_empty(), "left over: {leftovers:?}");
}

#[test]
fn a_download_of_another_size_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path());
    let pkg = package(b"1234");
    let fake = FakeDownload {
        bytes: b"12345".to_vec(),
        calls: Cell::new(0),
    };
    match fetch_package(&cache, &pkg, &fake) {
        Err(FetchError::SizeMismatch {
            expected: 4,
            actual: 5,
            ..
        }) => {}
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
}

#[test]
fn a_corrupted_cache_entry_is_replaced_by_a_fresh_download() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path());
    let bytes = b"good".to_vec();
    let pkg = package(&bytes);
    std::fs::create_dir_all(dir.path().join("debs")).expect("mkdir");
    std::fs::write(cache.deb_path(&pkg), b"evil").expect("plant");
    let fake = FakeDownload {
        bytes: bytes.clone(),
        calls: Cell::new(0),
    };
    let (path, outcome) = fetch_package(&cache, &pkg, &fake).expect("replaced");
    assert_eq!(outcome, FetchOutcome::Downloaded);
    assert_eq!(std::fs::read(path).expect("read"), bytes);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// A fake `apt-get`: logs its arguments and working dir; `download NAME=VER`
/// writes `$FAKE_DEB` into the working dir as apt would.
fn fake_apt(dir: &Path, deb: &Path) -> std::path::PathBuf {
    let script = dir.join("apt-get");
    let log = dir.join("apt.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"cwd=$(pwd)\" \"$@\" '--' >> '{log}'\n\
             for last; do :; done\n\
             case \"$*\" in *' download '*) cp '{deb}' \"./fake_1.0-1_all.deb\" ;; esac\n",
            log = log.display(),
            deb = deb.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

#[test]
fn apt_get_runs_with_a_project_local_config_and_updates_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_dir = dir.path().join("cache");
    let cache = Cache::new(&cache_dir);
    let deb = dir.path().join("source.deb");
    let bytes = b"deb bytes".to_vec();
    std::fs::write(&deb, &bytes).expect("deb");
    let source = AptSource {
        mirror: "http://deb.debian.org/debian".into(),
        suites: vec!["bookworm".into()],
        components: vec!["main".into()],
        arch: "amd64".into(),
        signed_by: "/usr/share/keyrings/debian-archive-keyring.gpg".into(),
    };
    let apt = AptGet::new(&cache, &source).with_program(fake_apt(dir.path(), &deb));
    let mut pkg = package(&bytes);
    fetch_package(&cache, &pkg, &apt).expect("first");
    // A second package through the same AptGet: no second update.
    pkg.name = "fake2".into();
    fetch_package(&cache, &pkg, &apt).expect("second");
    let log = std::fs::read_to_string(dir.path().join("apt.log")).expect("log");
    let runs: Vec<&str> = log.split("--\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(runs.len(), 3, "update + 2 downloads: {log}");
    assert!(runs[0].trim_end().ends_with("update"), "{}", runs[0]);
    assert!(
        runs[1].trim_end().ends_with("download\nfake=1.0-1"),
        "{}",
        runs[1]
    );
    assert!(
        runs[2].trim_end().ends_with("download\nfake2=1.0-1"),
        "{}",
        runs[2]
    );
    let apt_dir = cache_dir.join("apt");
    for run in &runs {
        for opt in [
            format!(
                "Dir::Etc::SourceList={}",
                apt_dir.join("sources.list").display()
            ),
            format!(
                "Dir::Etc::SourceParts={}",
                apt_dir.join("sources.list.d").display()
            ),
            format!("Dir::State::Lists={}", apt_dir.join("lists").display()),
            format!("Dir::Cache={}", apt_dir.join("cache").display()),
            "Dir::State::status=/dev/null".to_string(),
            "Debug::NoLocking=1".to_string(),
        ] {
            assert!(run.lines().any(|l| l == opt), "missing -o {opt} in {run}");
        }
    }
    // Downloads run in a scratch dir under the cache, never in the cwd.
    assert!(runs[1].starts_with(&format!("cwd={}", cache_dir.join("tmp").display())));
    let list = std::fs::read_to_string(apt_dir.join("sources.list")).expect("list");
    assert_eq!(
        list,
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://deb.debian.org/debian bookworm main\n"
    );
    assert!(std::fs::read_dir(apt_dir.join("sources.list.d"))
        .expect("parts")
        .next()
        .is_none());
}

#[test]
fn a_failing_apt_get_is_reported_with_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("apt-get");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n",
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let cache = Cache::new(dir.path().join("cache"));
    let source = AptSource {
        mirror: "http://deb.debian.org/debian".into(),
        suites: vec!["bookworm".into()],
        components: vec!["main".into()],
        arch: "amd64".into(),
        signed_by: "/k.gpg".into(),
    };
    let apt = AptGet::new(&cache, &source).with_program(&script);
    let e = fetch_package(&cache, &package(b"x"), &apt).expect_err("apt fails");
    assert!(e.to_string().contains("Unable to locate package"), "{e}");
}

fn tar_with(entries: &[(&str, &[u8])], symlink: Option<(&str, &str)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).expect("append");
    }
    if let Some((path, target)) = symlink {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, path, target).expect("link");
    }
    b.into_inner().expect("tar")
}

fn takes() -> Vec<Take> {
    vec![
        Take {
            path: "boot/vmlinuz-x".into(),
            kind: TakeKind::Kernel,
            optional: false,
        },
        Take {
            path: "lib/modules/x/kernel/a/b.ko.xz".into(),
            kind: TakeKind::Module,
            optional: true,
        },
    ]
}

#[test]
fn only_the_listed_files_are_extracted_to_the_inputs_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = tar_with(
        &[
            ("./boot/vmlinuz-x", b"kernel"),
            ("./boot/config-x", b"not wanted"),
            ("./lib/modules/x/kernel/a/b.ko.xz", b"module"),
        ],
        None,
    );
    let files = extract_from_tar("pkg", tar.as_slice(), &takes(), dir.path()).expect("extract");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].to, "vmlinuz");
    assert_eq!(files[1].to, "modules/b.ko.xz");
    assert_eq!(files[1].sha256, sha256sum(b"module"));
    assert_eq!(
        std::fs::read(dir.path().join("vmlinuz")).expect("k"),
        b"kernel"
    );
    assert_eq!(
        std::fs::read(dir.path().join("modules/b.ko.xz")).expect("m"),
        b"module"
    );
    let mut all = walk(dir.path());
    all.sort();
    assert_eq!(all.len(), 2, "{all:?}");
}

#[test]
fn a_missing_or_non_regular_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = tar_with(&[("./boot/vmlinuz-x", b"kernel")], None);
    match extract_from_tar("pkg", tar.as_slice(), &takes(), dir.path()) {
        Err(FetchError::MissingFile { path, .. }) => {
            assert_eq!(path, "lib/modules/x/kernel/a/b.ko.xz")
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
    let tar = tar_with(
        &[("./lib/modules/x/kernel/a/b.ko.xz", b"m")],
        Some(("./boot/vmlinuz-x", "/etc/passwd")),
    );
    match extract_from_tar("pkg", tar.as_slice(), &takes(), dir.path()) {
        Err(FetchError::MissingFile { path, .. }) => assert_eq!(path, "boot/vmlinuz-x"),
        other => panic!("expected MissingFile for a symlink, got {other:?}"),
    }
}

#[test]
fn a_real_deb_built_with_dpkg_deb_is_extracted() {
    // dpkg-deb ships with every Debian system this tool runs on.
    if std::process::Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no dpkg-deb");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(root.join("boot")).expect("mkdir");
    std::fs::create_dir_all(root.join("lib/modules/x/kernel/a")).expect("mkdir");
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: fake\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n",
    )
    .expect("control");
    std::fs::write(root.join("boot/vmlinuz-x"), b"kernel").expect("k");
    std::fs::write(root.join("lib/modules/x/kernel/a/b.ko.xz"), b"module").expect("m");
    let deb = dir.path().join("fake.deb");
    let st = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut bytes = Vec::new();
    std::fs::File::open(&deb)
        .expect("open")
        .read_to_end(&mut bytes)
        .expect("read");
    let mut pkg = package(&bytes);
    pkg.take = takes();
    let out = dir.path().join("inputs");
    let files = tessella_image::extract_deb(&deb, &pkg, &out).expect("extract");
    assert_eq!(files.len(), 2);
    assert_eq!(std::fs::read(out.join("vmlinuz")).expect("k"), b"kernel");
}

#[test]
fn fetch_inputs_writes_the_layout_and_refuses_to_wipe_a_foreign_dir() {
    if std::process::Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no dpkg-deb");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Build a tiny kernel-like and firmware-like .deb with dpkg-deb.
    let build = |name: &str, files: &[(&str, &[u8])]| -> Vec<u8> {
        let root = dir.path().join(format!("root-{name}"));
        std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
        std::fs::write(
            root.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"),
        )
        .expect("control");
        for (p, d) in files {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, d).expect("write");
        }
        let deb = dir.path().join(format!("{name}.deb"));
        let out = std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb)
            .output()
            .expect("dpkg-deb");
        assert!(out.status.success());
        std::fs::read(deb).expect("deb")
    };
    let kdeb = build(
        "kern",
        &[
            ("boot/vmlinuz-r", b"K"),
            ("lib/modules/r/kernel/m/a.ko.xz", b"A"),
        ],
    );
    let fdeb = build("fw", &[("usr/share/ovmf/OVMF.fd", b"F")]);
    let lock_text = format!(
        r#"format = "tessella-image-lock"
version = 1
kernel_release = "r"
[apt]
mirror = "http://deb.debian.org/debian"
suites = ["bookworm"]
components = ["main"]
arch = "amd64"
signed_by = "/k.gpg"
[[package]]
name = "kern"
version = "1.0-1"
arch = "all"
suite = "bookworm"
sha256 = "{}"
size = {}
[[package.take]]
path = "boot/vmlinuz-r"
kind = "kernel"
[[package.take]]
path = "lib/modules/r/kernel/m/a.ko.xz"
kind = "module"
[[package]]
name = "fw"
version = "1.0-1"
arch = "all"
suite = "bookworm"
sha256 = "{}"
size = {}
[[package.take]]
path = "usr/share/ovmf/OVMF.fd"
kind = "firmware"
"#,
        sha256sum(&kdeb),
        kdeb.len(),
        sha256sum(&fdeb),
        fdeb.len()
    );
    let lock = tessella_image::LockFile::parse(&lock_text).expect("lock");
    struct ByName(Vec<u8>, Vec<u8>);
    impl Downloader for ByName {
        fn download(&self, p: &LockedPackage, dest: &Path) -> Result<(), FetchError> {
            let bytes = if p.name == "kern" { &self.0 } else { &self.1 };
            std::fs::write(dest.join(p.deb_file_name()), bytes).map_err(|source| FetchError::Io {
                what: "fake".into(),
                source,
            })
        }
    }
    let cache = Cache::new(dir.path().join("cache"));
    let inputs = dir.path().join("inputs");
    let m = tessella_image::fetch_inputs(&lock, &cache, &ByName(kdeb, fdeb), &inputs, |_| {})
        .expect("fetch");
    assert_eq!(m.packages.len(), 2);
    for (f, content) in [("vmlinuz", "K"), ("modules/a.ko.xz", "A"), ("OVMF.fd", "F")] {
        assert_eq!(
            std::fs::read_to_string(inputs.join(f)).expect(f),
            content,
            "{f}"
        );
    }
    let json: tessella_image::InputsManifest =
        serde_json::from_slice(&std::fs::read(inputs.join("inputs.json")).expect("json"))
            .expect("parse");
    assert_eq!(json, m);
    assert!(tessella_image::check_inputs(&lock, &inputs)
        .expect("check")
        .is_some());
    // A tampered input is caught by check_inputs.
    std::fs::write(inputs.join("modules/a.ko.xz"), b"B").expect("tamper");
    assert!(matches!(
        tessella_image::check_inputs(&lock, &inputs),
        Err(FetchError::HashMismatch { .. })
    ));
    // A foreign non-empty dir is not wiped.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(foreign.join("precious"), b"x").expect("write");
    struct Never;
    impl Downloader for Never {
        fn download(&self, _: &LockedPackage, _: &Path) -> Result<(), FetchError> {
            panic!("must not download")
        }
    }
    assert!(tessella_image::fetch_inputs(&lock, &cache, &Never, &foreign, |_| {}).is_err());
    assert!(foreign.join("precious").exists());
}
