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
