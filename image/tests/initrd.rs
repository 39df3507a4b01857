//! The initrd writer, read back with an independent minimal newc reader.

use std::time::{Duration, SystemTime};

use tessella_image::{
    appliance_initrd, modules_list, Initrd, InitrdError, ModuleEntry, DEFAULT_NODE_TOML,
};

/// One entry as read back.
#[derive(Debug, Clone, PartialEq)]
struct Read {
    offset: usize,
    name: String,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    dev: [u32; 4],
    check: u32,
    data: Vec<u8>,
}

/// A newc reader written from the format description (cpio(5), the kernel's
/// Documentation/driver-api/early-userspace/buffer-format.rst), checking
/// alignment as it goes. Stops after the trailer, which must end the data.
fn parse(bytes: &[u8]) -> Vec<Read> {
    let field = |off: usize, i: usize| -> u32 {
        let s = std::str::from_utf8(&bytes[off + 6 + 8 * i..off + 14 + 8 * i]).expect("ascii");
        u32::from_str_radix(s, 16).expect("hex")
    };
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        assert_eq!(off % 4, 0, "header at {off} not 4-aligned");
        assert_eq!(&bytes[off..off + 6], b"070701", "magic at {off}");
        let namesize = field(off, 11) as usize;
        let filesize = field(off, 6) as usize;
        let name_start = off + 110;
        let name = &bytes[name_start..name_start + namesize];
        assert_eq!(name.last(), Some(&0), "name NUL");
        let name = String::from_utf8(name[..namesize - 1].to_vec()).expect("utf8");
        let mut data_start = name_start + namesize;
        while !data_start.is_multiple_of(4) {
            assert_eq!(bytes[data_start], 0, "name padding");
            data_start += 1;
        }
        let data = bytes[data_start..data_start + filesize].to_vec();
        let mut next = data_start + filesize;
        while !next.is_multiple_of(4) {
            assert_eq!(bytes[next], 0, "data padding");
            next += 1;
        }
        let r = Read {
            offset: off,
            name,
            ino: field(off, 0),
            mode: field(off, 1),
            uid: field(off, 2),
            gid: field(off, 3),
            nlink: field(off, 4),
            mtime: field(off, 5),
            dev: [field(off, 7), field(off, 8), field(off, 9), field(off, 10)],
            check: field(off, 12),
            data,
        };
        let trailer = r.name == "TRAILER!!!";
        out.push(r);
        off = next;
        if trailer {
            assert_eq!(off, bytes.len(), "bytes after the trailer");
            return out;
        }
    }
}

fn sample(order: &[usize]) -> Initrd {
    let files: [(&str, &[u8], bool); 4] = [
        ("/init", b"\x7fELF static", true),
        ("/etc/tessella/node.toml", b"data_dir = \"/x\"\n", false),
        ("/lib/modules/r/a.ko.xz", b"12345", false),
        ("/lib/modules/r/b.ko.xz", b"123", false),
    ];
    let mut i = Initrd::new();
    for &k in order {
        let (p, d, x) = files[k];
        i.add_file(p, d.to_vec(), x).expect("add");
    }
    i.add_dir("/dev").expect("dir");
    i.add_dir("/var/lib/tessella").expect("dir");
    i
}

#[test]
fn entries_are_sorted_with_fixed_fields_and_aligned() {
    let bytes = sample(&[0, 1, 2, 3]).to_bytes().expect("write");
    let entries = parse(&bytes);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "dev",
            "etc",
            "etc/tessella",
            "etc/tessella/node.toml",
            "init",
            "lib",
            "lib/modules",
            "lib/modules/r",
            "lib/modules/r/a.ko.xz",
            "lib/modules/r/b.ko.xz",
            "var",
            "var/lib",
            "var/lib/tessella",
            "TRAILER!!!",
        ]
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!((e.uid, e.gid, e.mtime, e.check), (0, 0, 0, 0), "{}", e.name);
        assert_eq!(e.dev, [0; 4], "{}", e.name);
        if e.name == "TRAILER!!!" {
            assert_eq!((e.ino, e.mode, e.nlink, e.data.len()), (0, 0, 1, 0));
            continue;
        }
        assert_eq!(e.ino as usize, i + 1, "inode of {}", e.name);
        match e.name.as_str() {
            "init" => assert_eq!((e.mode, e.nlink), (0o100755, 1)),
            n if n.ends_with(".toml") || n.ends_with(".xz") => {
                assert_eq!((e.mode, e.nlink), (0o100644, 1), "{n}")
            }
            n => {
                assert_eq!((e.mode, e.nlink), (0o040755, 2), "{n}");
                assert!(e.data.is_empty());
            }
        }
    }
    let a = entries
        .iter()
        .find(|e| e.name.ends_with("a.ko.xz"))
        .expect("a");
    assert_eq!(a.data, b"12345");
    // 5 data bytes are padded to 8: the next header starts 4-aligned.
    let b = entries
        .iter()
        .find(|e| e.name.ends_with("b.ko.xz"))
        .expect("b");
    assert_eq!(b.offset % 4, 0);
}

#[test]
fn the_bytes_do_not_depend_on_insertion_order() {
    let a = sample(&[0, 1, 2, 3]).to_bytes().expect("a");
    let b = sample(&[3, 1, 0, 2]).to_bytes().expect("b");
    assert_eq!(a, b);
    let mut c = sample(&[2, 3, 1, 0]);
    // Re-adding identical content is a no-op.
    c.add_file("/init", b"\x7fELF static".to_vec(), true)
        .expect("same again");
    assert_eq!(a, c.to_bytes().expect("c"));
}

#[test]
fn the_bytes_do_not_depend_on_file_mtimes_on_disk() {
    // The appliance is assembled from files read from disk: give two copies
    // of the same files very different mtimes and compare the archives.
    let mut outputs = Vec::new();
    for (k, secs) in [(0u64, 1_000_000u64), (1, 1_700_000_000)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut modules = Vec::new();
        for (name, data) in [("x.ko.xz", b"xx".as_slice()), ("y.ko.xz", b"yyy")] {
            let p = dir.path().join(name);
            std::fs::write(&p, data).expect("write");
            let f = std::fs::File::options().write(true).open(&p).expect("open");
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs + k))
                .expect("mtime");
            modules.push((
                ModuleEntry {
                    basename: name.into(),
                    optional: name == "y.ko.xz",
                },
                std::fs::read(&p).expect("read"),
            ));
        }
        let initrd =
            appliance_initrd(b"init".to_vec(), "r1", modules, b"c = 1\n".to_vec()).expect("initrd");
        outputs.push(initrd.to_bytes().expect("bytes"));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn the_appliance_layout_is_the_pid1_contract() {
    let modules = vec![
        (
            ModuleEntry {
                basename: "configfs.ko.xz".into(),
                optional: false,
            },
            b"c".to_vec(),
        ),
        (
            ModuleEntry {
                basename: "tdx-guest.ko.xz".into(),
                optional: true,
            },
            b"t".to_vec(),
        ),
    ];
    let initrd = appliance_initrd(
        b"bin".to_vec(),
        "6.12.95+deb12-amd64",
        modules,
        DEFAULT_NODE_TOML.as_bytes().to_vec(),
    )
    .expect("initrd");
    let entries = parse(&initrd.to_bytes().expect("bytes"));
    let get = |n: &str| entries.iter().find(|e| e.name == n).cloned();
    for dir in [
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "var",
        "var/lib",
        "var/lib/tessella",
        "etc",
        "etc/tessella",
        "lib",
        "lib/modules",
        "lib/modules/6.12.95+deb12-amd64",
    ] {
        assert_eq!(get(dir).map(|e| e.mode), Some(0o040755), "{dir}");
    }
    assert_eq!(get("init").map(|e| e.mode), Some(0o100755));
    let list = get("etc/tessella/modules").expect("modules list");
    assert_eq!(
        String::from_utf8(list.data).expect("utf8"),
        "/lib/modules/6.12.95+deb12-amd64/configfs.ko.xz\n\
         /lib/modules/6.12.95+deb12-amd64/tdx-guest.ko.xz optional\n"
    );
    assert_eq!(
        get("lib/modules/6.12.95+deb12-amd64/tdx-guest.ko.xz").map(|e| e.data),
        Some(b"t".to_vec())
    );
    assert_eq!(
        get("etc/tessella/node.toml").map(|e| e.data),
        Some(DEFAULT_NODE_TOML.as_bytes().to_vec())
    );
    assert_eq!(
        modules_list("r", &[]),
        "",
        "no modules, empty list (not a blank line)"
    );
}

#[test]
fn the_system_cpio_tool_reads_the_archive_when_present() {
    // An independent reader, when the host has GNU cpio.
    let Ok(mut child) = std::process::Command::new("cpio")
        .args(["-itv", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("skipped: no cpio");
        return;
    };
    let bytes = sample(&[0, 1, 2, 3]).to_bytes().expect("bytes");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&bytes).expect("feed");
    }
    let out = child.wait_with_output().expect("cpio");
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("-rwxr-xr-x"), "{listing}");
    assert!(listing.lines().any(|l| l.ends_with(" init")), "{listing}");
    assert_eq!(listing.lines().count(), 13, "{listing}");
}

#[test]
fn bad_paths_and_conflicts_are_refused() {
    let mut i = Initrd::new();
    for bad in ["", "/", "a/../b", "a//b", "./a", "a/\0"] {
        assert!(
            matches!(i.add_file(bad, vec![], false), Err(InitrdError::BadPath(_))),
            "{bad:?}"
        );
    }
    i.add_file("/etc/x", b"1".to_vec(), false).expect("x");
    assert!(matches!(
        i.add_file("/etc/x", b"2".to_vec(), false),
        Err(InitrdError::Conflict(_))
    ));
    assert!(matches!(
        i.add_file("/etc/x/y", b"2".to_vec(), false),
        Err(InitrdError::NotADirectory(_))
    ));
    assert!(matches!(
        i.add_dir("/etc/x"),
        Err(InitrdError::NotADirectory(_))
    ));
}
