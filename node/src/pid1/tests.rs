//! PID 1's sequencing against a fake system.

use std::collections::{HashMap, HashSet};

use nix::errno::Errno;

use super::*;

const MODULES: &str = "/etc/tessella/modules";
const DEV_CONFIG: &str = "[identity]\nmode = \"dev\"\n[admin]\nlisten = \"0.0.0.0:7947\"\n";

/// Records every call as an event; files, failures and the interface's
/// arrival are set up by the test.
#[derive(Default)]
struct Fake {
    files: HashMap<PathBuf, Vec<u8>>,
    mount_errors: HashMap<&'static str, Errno>,
    module_errors: HashMap<PathBuf, Errno>,
    /// Interfaces that exist.
    links: HashSet<String>,
    /// The interface that appears after this many sleeps.
    late_link: Option<(String, usize)>,
    sleeps: usize,
    /// Directories made and files written, with their content.
    dirs: HashSet<PathBuf>,
    written: HashMap<PathBuf, Vec<u8>>,
    write_error: Option<Errno>,
    events: Vec<String>,
    console: Vec<String>,
}

impl Fake {
    fn new() -> Fake {
        let mut f = Fake::default();
        f.file(
            MODULES,
            b"/lib/modules/k/failover.ko.xz\n/lib/modules/k/virtio_net.ko.xz\n\
              /lib/modules/k/configfs.ko.xz\n/lib/modules/k/tdx-guest.ko.xz optional\n",
        );
        f.links.insert("lo".into());
        f.links.insert("eth0".into());
        f
    }

    fn file(&mut self, path: &str, bytes: &[u8]) {
        self.files.insert(PathBuf::from(path), bytes.to_vec());
    }

    fn has_line(&self, needle: &str) -> bool {
        self.console.iter().any(|l| l.contains(needle))
    }
}

impl System for Fake {
    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        self.events.push(format!("mount {}", m.target));
        match self.mount_errors.get(m.target) {
            Some(e) => Err(io::Error::from_raw_os_error(*e as i32)),
            None => Ok(()),
        }
    }

    fn load_module(&mut self, path: &Path) -> io::Result<()> {
        self.events.push(format!("module {}", path.display()));
        match self.module_errors.get(path) {
            Some(e) => Err(io::Error::from_raw_os_error(*e as i32)),
            None => Ok(()),
        }
    }

    fn read_file(&mut self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        self.events.push(format!("read {}", path.display()));
        let bytes = self
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if bytes.len() > limit {
            return Err(io::Error::other("too large"));
        }
        Ok(bytes)
    }

    fn create_private_dir(&mut self, path: &Path) -> io::Result<()> {
        self.events.push(format!("mkdir {}", path.display()));
        self.dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn write_private_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.events.push(format!("write {}", path.display()));
        if let Some(e) = self.write_error {
            return Err(io::Error::from_raw_os_error(e as i32));
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !self.dirs.contains(parent) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        self.written.insert(path.to_path_buf(), bytes.to_vec());
        Ok(())
    }

    fn exists(&mut self, path: &Path) -> bool {
        if self.files.contains_key(path) {
            return true;
        }
        self.links
            .iter()
            .any(|l| path == netif::sysfs_dir(l).as_path())
    }

    fn sleep(&mut self, _d: Duration) {
        self.sleeps += 1;
        if let Some((name, after)) = &self.late_link {
            if self.sleeps >= *after {
                self.links.insert(name.clone());
            }
        }
    }

    fn link_up(&mut self, ifname: &str) -> io::Result<()> {
        self.events.push(format!("up {ifname}"));
        Ok(())
    }

    fn add_address(&mut self, ifname: &str, addr: InterfaceAddress) -> io::Result<()> {
        self.events.push(format!("addr {ifname} {addr}"));
        Ok(())
    }

    fn add_default_route(&mut self, ifname: &str, gateway: IpAddr) -> io::Result<()> {
        self.events.push(format!("route {ifname} {gateway}"));
        Ok(())
    }

    fn console_raw(&mut self, line: &str) {
        self.console.push(line.to_string());
    }
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn boots_in_order_with_the_hosts_config() {
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, b"[identity]\nmode = \"dev\"\n");
    sys.file(fwcfg::FW_CFG_CONFIG, DEV_CONFIG.as_bytes());
    let booted = boot(&mut sys, &no_env()).expect("boot");
    assert_eq!(
        booted.source,
        ConfigSource::FwCfg(PathBuf::from(fwcfg::FW_CFG_CONFIG))
    );
    assert_eq!(booted.config_bytes, DEV_CONFIG.as_bytes());
    assert_eq!(booted.config.admin.listen.to_string(), "0.0.0.0:7947");
    let expected = [
        "mount /proc",
        "mount /sys",
        "mount /dev",
        "mount /tmp",
        "mount /run",
        "read /etc/tessella/node.toml",
        "read /etc/tessella/modules",
        "module /lib/modules/k/failover.ko.xz",
        "module /lib/modules/k/virtio_net.ko.xz",
        "module /lib/modules/k/configfs.ko.xz",
        "module /lib/modules/k/tdx-guest.ko.xz",
        "mount /sys/kernel/config",
        "read /sys/firmware/qemu_fw_cfg/by_name/opt/tessella/node.toml/raw",
        "up lo",
        "up eth0",
        "addr eth0 10.0.2.15/24",
        "route eth0 10.0.2.2",
    ];
    assert_eq!(sys.events, expected);
    assert!(sys.console.iter().all(|l| l.starts_with(CONSOLE_PREFIX)));
    // The config line names the source, size and SHA-384 of the exact bytes.
    let sha = hex::encode(configid::config_sha384(DEV_CONFIG.as_bytes()));
    assert!(
        sys.has_line(&format!(
            "config from fw_cfg opt/tessella/node.toml ({}): {} bytes, sha384 {sha}, identity dev",
            fwcfg::FW_CFG_CONFIG,
            DEV_CONFIG.len()
        )),
        "{:?}",
        sys.console
    );
    assert!(sys.has_line("tessella-init: eth0 up 10.0.2.15/24 via 10.0.2.2"));
    assert!(sys.has_line("tessella-init: loaded 4 of 4 modules from /etc/tessella/modules"));
}

#[test]
fn falls_back_to_the_image_config() {
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    let booted = boot(&mut sys, &no_env()).expect("boot");
    assert_eq!(
        booted.source,
        ConfigSource::Image(PathBuf::from(fwcfg::IMAGE_CONFIG))
    );
    assert_eq!(booted.config_bytes, DEV_CONFIG.as_bytes());
    assert!(sys.has_line("config from image default /etc/tessella/node.toml"));
}

#[test]
fn no_config_at_all_is_fatal() {
    let mut sys = Fake::new();
    let e = boot(&mut sys, &no_env()).expect_err("no config");
    assert!(matches!(e, InitError::NoConfig), "{e}");
    assert!(e.to_string().contains(fwcfg::FW_CFG_CONFIG));
    // The modules were still loaded from the default list (fw_cfg needs them).
    assert!(sys
        .events
        .contains(&"module /lib/modules/k/configfs.ko.xz".to_string()));
}

#[test]
fn the_image_config_names_the_modules_file() {
    let mut sys = Fake::new();
    sys.file(
        fwcfg::IMAGE_CONFIG,
        b"[identity]\nmode = \"dev\"\n[guest]\nmodules_file = \"/lib/tessella.modules\"\n",
    );
    sys.file("/lib/tessella.modules", b"/m/only.ko\n");
    sys.file(fwcfg::FW_CFG_CONFIG, DEV_CONFIG.as_bytes());
    boot(&mut sys, &no_env()).expect("boot");
    assert!(sys.events.contains(&"module /m/only.ko".to_string()));
    assert!(!sys.events.iter().any(|e| e == "read /etc/tessella/modules"));
    // The host's config has the default modules_file: it is reported as unused.
    assert!(
        sys.has_line("note: guest.modules_file /etc/tessella/modules of this config is not used")
    );
}

#[test]
fn module_failures() {
    // Optional: logged, boot goes on. Already loaded: fine.
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    sys.module_errors
        .insert("/lib/modules/k/tdx-guest.ko.xz".into(), Errno::ENODEV);
    sys.module_errors
        .insert("/lib/modules/k/failover.ko.xz".into(), Errno::EEXIST);
    boot(&mut sys, &no_env()).expect("boot");
    assert!(sys.has_line("optional module /lib/modules/k/tdx-guest.ko.xz not loaded: "));
    assert!(sys.has_line("module /lib/modules/k/failover.ko.xz already loaded"));
    assert!(sys.has_line("loaded 2 of 4 modules"));

    // Required: fatal, with the module and its line; nothing after it runs.
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    sys.module_errors
        .insert("/lib/modules/k/virtio_net.ko.xz".into(), Errno::ENOEXEC);
    let e = boot(&mut sys, &no_env()).expect_err("required");
    assert!(matches!(e, InitError::Module { line: 2, .. }), "{e}");
    assert!(e.to_string().starts_with(
        "cannot load kernel module /lib/modules/k/virtio_net.ko.xz (modules file line 2): "
    ));
    assert!(!sys.events.iter().any(|e| e.contains("configfs.ko.xz")));

    // A bad modules file names its line; a missing one its path.
    let mut sys = Fake::new();
    sys.file(MODULES, b"/m/a.ko\nrelative.ko\n");
    let e = boot(&mut sys, &no_env()).expect_err("bad file");
    assert_eq!(
        e.to_string(),
        "modules file /etc/tessella/modules: line 2: \"relative.ko\" is not an absolute path"
    );
    let mut sys = Fake::new();
    sys.files.remove(Path::new(MODULES));
    let e = boot(&mut sys, &no_env()).expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("cannot read /etc/tessella/modules: "),
        "{e}"
    );
}

#[test]
fn mount_failures() {
    // Already mounted is fine; configfs failing is only a warning.
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    sys.mount_errors.insert("/dev", Errno::EBUSY);
    sys.mount_errors.insert("/sys/kernel/config", Errno::ENODEV);
    boot(&mut sys, &no_env()).expect("boot");
    assert!(sys.has_line("/dev already mounted"));
    assert!(sys.has_line("warning: cannot mount configfs on /sys/kernel/config"));

    let mut sys = Fake::new();
    sys.mount_errors.insert("/sys", Errno::EPERM);
    let e = boot(&mut sys, &no_env()).expect_err("mount");
    assert!(
        e.to_string().starts_with("cannot mount sysfs on /sys: "),
        "{e}"
    );
    assert_eq!(sys.events.last().map(String::as_str), Some("mount /sys"));
}

#[test]
fn bad_configs_name_their_source() {
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    sys.file(fwcfg::FW_CFG_CONFIG, b"[admin]\nlisten = \"x\"\n");
    let e = boot(&mut sys, &no_env()).expect_err("bad");
    let msg = e.to_string();
    assert!(
        msg.starts_with("config from fw_cfg opt/tessella/node.toml"),
        "{msg}"
    );
    assert!(
        msg.contains("admin.listen: \"x\" is not a socket address"),
        "{msg}"
    );
    assert!(
        !sys.events.iter().any(|e| e.starts_with("up ")),
        "no network"
    );

    // A broken image config is fatal even before fw_cfg is looked at.
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, b"[guest]\nbogus = 1\n");
    let e = boot(&mut sys, &no_env()).expect_err("image");
    assert!(
        e.to_string()
            .starts_with("the image's config: /etc/tessella/node.toml: unknown key guest.bogus"),
        "{e}"
    );

    // TDX configs take no environment overrides (they are bound to MRCONFIGID).
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, b"[policy]\nfile = \"/p.json\"\n");
    let env = vec![("TESSELLA_ADMIN_LISTEN".to_string(), "0.0.0.0:1".to_string())];
    let e = boot(&mut sys, &env).expect_err("env");
    assert!(
        e.to_string()
            .contains("TESSELLA_ADMIN_LISTEN: identity.mode \"tdx\" binds"),
        "{e}"
    );
}

#[test]
fn waits_a_bounded_time_for_the_interface() {
    // Appears after 3 polls.
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    sys.links.remove("eth0");
    sys.late_link = Some(("eth0".into(), 3));
    boot(&mut sys, &no_env()).expect("boot");
    assert_eq!(sys.sleeps, 3);
    assert!(sys.has_line("waiting for eth0"));

    // Never appears: gives up after link_timeout_ms / 50 ms polls.
    let mut sys = Fake::new();
    sys.file(
        fwcfg::IMAGE_CONFIG,
        b"[identity]\nmode = \"dev\"\n[guest]\ninterface = \"ens9\"\nlink_timeout_ms = 120\n",
    );
    let e = boot(&mut sys, &no_env()).expect_err("timeout");
    assert!(
        matches!(e, InitError::NoInterface { ref ifname, timeout_ms: 120 } if ifname == "ens9")
    );
    assert_eq!(sys.sleeps, 3, "120 ms in 50 ms polls, rounded up");
    assert!(e
        .to_string()
        .starts_with("network interface ens9 did not appear within 120 ms"));
    // lo came up before the wait.
    assert!(sys.events.contains(&"up lo".to_string()));

    // No gateway: no default route.
    let mut sys = Fake::new();
    sys.file(
        fwcfg::IMAGE_CONFIG,
        b"[identity]\nmode = \"dev\"\n[guest]\ngateway = \"\"\n",
    );
    boot(&mut sys, &no_env()).expect("boot");
    assert!(!sys.events.iter().any(|e| e.starts_with("route")));
    assert!(sys.has_line("eth0 up 10.0.2.15/24 (no default route)"));
}

/// SHA-384 of "abc": FIPS 180-2 appendix D.1 (independent of our code).
const ABC_SHA384: &str = "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                          8086072ba1e7cc2358baeca134c825a7";

const POLICY_FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/tessella/files/policy.json/raw";
const ISSUERS_FW_CFG: &str =
    "/sys/firmware/qemu_fw_cfg/by_name/opt/tessella/files/issuers.json/raw";

/// A TDX config that pins two files and names them under /run/tessella.
fn tdx_config_with_files(policy_pin: &str, issuers_pin: &str) -> String {
    format!(
        "[policy]\nfile = \"/run/tessella/policy.json\"\n\
         [tickets]\ntrusted_issuers_file = \"/run/tessella/issuers.json\"\n\
         [guest.files]\n\"policy.json\" = \"{policy_pin}\"\n\"issuers.json\" = \"{issuers_pin}\"\n"
    )
}

#[test]
fn delivers_pinned_files_before_the_network() {
    let issuers = b"[]\n";
    let issuers_pin = Sha384Digest::of(issuers).to_string();
    let config = tdx_config_with_files(&ABC_SHA384.to_ascii_uppercase(), &issuers_pin);
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    sys.file(fwcfg::FW_CFG_CONFIG, config.as_bytes());
    sys.file(POLICY_FW_CFG, b"abc");
    sys.file(ISSUERS_FW_CFG, issuers);
    // Not pinned: never read.
    sys.file(
        "/sys/firmware/qemu_fw_cfg/by_name/opt/tessella/files/extra/raw",
        b"x",
    );
    let booted = boot(&mut sys, &no_env()).expect("boot");
    assert_eq!(
        booted.config.policy.file.as_deref(),
        Some(Path::new("/run/tessella/policy.json"))
    );
    // The paths are the ones the module uses.
    assert_eq!(files::fw_cfg_path("policy.json"), Path::new(POLICY_FW_CFG));
    assert_eq!(
        files::fw_cfg_name("policy.json"),
        "opt/tessella/files/policy.json"
    );
    let config_read = sys
        .events
        .iter()
        .position(|e| e == "read /sys/firmware/qemu_fw_cfg/by_name/opt/tessella/node.toml/raw")
        .expect("config read");
    // After the config, before the network; in name order.
    assert_eq!(
        sys.events[config_read + 1..],
        [
            "mkdir /run/tessella".to_string(),
            format!("read {ISSUERS_FW_CFG}"),
            "write /run/tessella/issuers.json".to_string(),
            format!("read {POLICY_FW_CFG}"),
            "write /run/tessella/policy.json".to_string(),
            "up lo".to_string(),
            "up eth0".to_string(),
            "addr eth0 10.0.2.15/24".to_string(),
            "route eth0 10.0.2.2".to_string(),
        ]
    );
    assert_eq!(sys.written[Path::new("/run/tessella/policy.json")], b"abc");
    assert_eq!(
        sys.written[Path::new("/run/tessella/issuers.json")],
        issuers
    );
    assert!(
        sys.console.contains(&format!(
            "tessella-init: file policy.json from fw_cfg: 3 bytes, sha384 {ABC_SHA384} (pinned by the config)"
        )),
        "{:?}",
        sys.console
    );
    assert!(sys.has_line(&format!(
        "tessella-init: file issuers.json from fw_cfg: 3 bytes, sha384 {issuers_pin} (pinned by the config)"
    )));
    assert!(!sys.has_line("warning:"), "{:?}", sys.console);
}

#[test]
fn no_pinned_files_means_nothing_is_written() {
    let mut sys = Fake::new();
    sys.file(fwcfg::IMAGE_CONFIG, DEV_CONFIG.as_bytes());
    sys.file(POLICY_FW_CFG, b"abc");
    boot(&mut sys, &no_env()).expect("boot");
    assert!(!sys
        .events
        .iter()
        .any(|e| e.starts_with("mkdir") || e.starts_with("write") || e.contains("/files/")));
}

#[test]
fn a_missing_file_is_fatal_and_named() {
    let mut sys = Fake::new();
    sys.file(
        fwcfg::FW_CFG_CONFIG,
        tdx_config_with_files(ABC_SHA384, ABC_SHA384).as_bytes(),
    );
    sys.file(ISSUERS_FW_CFG, b"abc");
    let e = boot(&mut sys, &no_env()).expect_err("missing");
    assert!(
        matches!(e, InitError::FileMissing { ref name, .. } if name == "policy.json"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "deployment file policy.json: the host supplied no fw_cfg item \
             opt/tessella/files/policy.json ({POLICY_FW_CFG}); guest.files pins it (expected \
             sha384 {ABC_SHA384}): launch with the file as an argument (launch-tdx.sh CONFIG \
             policy.json ...)"
        )
    );
    // issuers.json (first in name order) was delivered; nothing after the failure ran.
    assert!(sys
        .written
        .contains_key(Path::new("/run/tessella/issuers.json")));
    assert!(!sys
        .written
        .contains_key(Path::new("/run/tessella/policy.json")));
    assert!(
        !sys.events.iter().any(|e| e.starts_with("up ")),
        "no network"
    );
}

#[test]
fn a_different_file_is_fatal_with_both_digests() {
    let mut sys = Fake::new();
    sys.file(
        fwcfg::FW_CFG_CONFIG,
        tdx_config_with_files(ABC_SHA384, ABC_SHA384).as_bytes(),
    );
    sys.file(POLICY_FW_CFG, b"abc");
    sys.file(ISSUERS_FW_CFG, b"abd");
    let e = boot(&mut sys, &no_env()).expect_err("mismatch");
    let actual = Sha384Digest::of(b"abd").to_string();
    assert_ne!(actual, ABC_SHA384);
    assert_eq!(
        e.to_string(),
        format!(
            "deployment file issuers.json from fw_cfg opt/tessella/files/issuers.json: sha384 \
             mismatch: expected {ABC_SHA384} (pinned by guest.files), actual {actual} (3 bytes): \
             the host passed another file than the config names"
        )
    );
    assert!(sys.written.is_empty(), "nothing written: {:?}", sys.written);
    assert!(
        !sys.events.iter().any(|e| e.starts_with("up ")),
        "no network"
    );
}

#[test]
fn file_size_is_bounded() {
    // Exactly the limit is accepted.
    let big = vec![b'x'; files::MAX_FILE_BYTES];
    let config = format!(
        "[identity]\nmode = \"dev\"\n[guest.files]\nbig = \"{}\"\n",
        Sha384Digest::of(&big)
    );
    let mut sys = Fake::new();
    sys.file(fwcfg::FW_CFG_CONFIG, config.as_bytes());
    sys.file(
        "/sys/firmware/qemu_fw_cfg/by_name/opt/tessella/files/big/raw",
        &big,
    );
    boot(&mut sys, &no_env()).expect("1 MiB");
    assert_eq!(sys.written[Path::new("/run/tessella/big")].len(), big.len());

    // One byte more is refused, even when it is the pinned content.
    let bigger = vec![b'x'; files::MAX_FILE_BYTES + 1];
    let config = format!(
        "[identity]\nmode = \"dev\"\n[guest.files]\nbig = \"{}\"\n",
        Sha384Digest::of(&bigger)
    );
    let mut sys = Fake::new();
    sys.file(fwcfg::FW_CFG_CONFIG, config.as_bytes());
    sys.file(
        "/sys/firmware/qemu_fw_cfg/by_name/opt/tessella/files/big/raw",
        &bigger,
    );
    let e = boot(&mut sys, &no_env()).expect_err("too big");
    assert!(
        matches!(e, InitError::FileRead { ref name, .. } if name == "big"),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(
            "deployment file big: cannot read \
             /sys/firmware/qemu_fw_cfg/by_name/opt/tessella/files/big/raw: "
        ),
        "{e}"
    );
    assert!(sys.written.is_empty());
}

#[test]
fn a_write_failure_is_fatal() {
    let mut sys = Fake::new();
    sys.file(
        fwcfg::FW_CFG_CONFIG,
        tdx_config_with_files(ABC_SHA384, ABC_SHA384).as_bytes(),
    );
    sys.file(POLICY_FW_CFG, b"abc");
    sys.file(ISSUERS_FW_CFG, b"abc");
    sys.write_error = Some(Errno::ENOSPC);
    let e = boot(&mut sys, &no_env()).expect_err("write");
    assert!(
        e.to_string()
            .starts_with("cannot write /run/tessella/issuers.json: "),
        "{e}"
    );
}

#[test]
fn paths_under_run_tessella_that_are_not_pinned_are_reported() {
    let config = format!(
        "[policy]\nfile = \"/run/tessella/policy.json\"\n\
         [tickets]\ntrusted_issuers_file = \"/run/tessella/issuers.jsn\"\n\
         ticket_file = \"/etc/tessella/ticket.jwt\"\n\
         [guest.files]\n\"policy.json\" = \"{ABC_SHA384}\"\n"
    );
    let mut sys = Fake::new();
    sys.file(fwcfg::FW_CFG_CONFIG, config.as_bytes());
    sys.file(POLICY_FW_CFG, b"abc");
    boot(&mut sys, &no_env()).expect("boot");
    let warnings: Vec<_> = sys
        .console
        .iter()
        .filter(|l| l.contains("warning:"))
        .collect();
    assert_eq!(
        warnings,
        ["tessella-init: warning: tickets.trusted_issuers_file /run/tessella/issuers.jsn is not \
          delivered: guest.files pins no such name"]
    );
}
