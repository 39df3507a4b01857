//! The real [`System`]: mount(2), finit_module(2) and rtnetlink, through
//! `nix` and `rtnetlink` (no `unsafe` here), and the zombie reaper.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::MsFlags;
use nix::sys::wait::waitpid;

use crate::config::InterfaceAddress;

use super::netif::{self, Netlink};
use super::{Mount, System};

/// `MODULE_INIT_COMPRESSED_FILE` (Linux 6.4+, `include/uapi/linux/module.h`):
/// the kernel decompresses the module itself (Debian's `.ko.xz`).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// The machine PID 1 runs on.
#[derive(Default)]
pub struct LinuxSystem {
    netlink: Option<Netlink>,
}

impl LinuxSystem {
    /// A system with no netlink socket open yet.
    pub fn new() -> Self {
        LinuxSystem::default()
    }

    fn netlink(&mut self) -> io::Result<&Netlink> {
        if self.netlink.is_none() {
            self.netlink = Some(Netlink::connect()?);
        }
        self.netlink
            .as_ref()
            .ok_or_else(|| io::Error::other("netlink connection unavailable"))
    }

    fn ifindex(&mut self, ifname: &str) -> io::Result<u32> {
        let path = netif::sysfs_dir(ifname).join("ifindex");
        let text = self.read_file(&path, 64)?;
        String::from_utf8_lossy(&text).trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not an interface index", path.display()),
            )
        })
    }

    /// Drops the netlink socket and its runtime (before the node's runtime
    /// starts).
    pub fn close_netlink(&mut self) {
        self.netlink = None;
    }
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl System for LinuxSystem {
    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        let mut flags = MsFlags::empty();
        flags.set(MsFlags::MS_NOSUID, m.nosuid);
        flags.set(MsFlags::MS_NODEV, m.nodev);
        flags.set(MsFlags::MS_NOEXEC, m.noexec);
        nix::mount::mount(Some(m.source), m.target, Some(m.fstype), flags, m.data).map_err(errno_io)
    }

    fn load_module(&mut self, path: &Path) -> io::Result<()> {
        let file = std::fs::File::open(path)?;
        let compressed = path
            .extension()
            .is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
        let flags = if compressed {
            ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
        } else {
            ModuleInitFlags::empty()
        };
        finit_module(&file, c"", flags).map_err(errno_io)
    }

    fn read_file(&mut self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        let file = std::fs::File::open(path)?;
        let mut out = Vec::new();
        file.take(limit as u64 + 1).read_to_end(&mut out)?;
        if out.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {limit} bytes"),
            ));
        }
        Ok(out)
    }

    fn exists(&mut self, path: &Path) -> bool {
        path.exists()
    }

    fn create_private_dir(&mut self, path: &Path) -> io::Result<()> {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            }
            Err(e) => Err(e),
        }
    }

    fn write_private_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // `mode` only applies to a new file.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    fn link_up(&mut self, ifname: &str) -> io::Result<()> {
        let index = self.ifindex(ifname)?;
        self.netlink()?.link_up(index)
    }

    fn add_address(&mut self, ifname: &str, addr: InterfaceAddress) -> io::Result<()> {
        let index = self.ifindex(ifname)?;
        self.netlink()?.add_address(index, addr)
    }

    fn add_default_route(&mut self, ifname: &str, gateway: IpAddr) -> io::Result<()> {
        let index = self.ifindex(ifname)?;
        self.netlink()?.add_default_route(index, gateway)
    }

    fn console_raw(&mut self, line: &str) {
        // The console may be gone; PID 1 must not die of a failed write.
        let _ = writeln!(io::stderr(), "{line}");
    }
}

/// Reaps any child that ends, forever. PID 1 inherits every orphan of the
/// system; the node itself spawns no process, so in practice there is
/// nothing to reap, and a blocking `waitpid` that finds no child simply
/// waits a second and tries again (no SIGCHLD handler needed). Also what a
/// halted PID 1 does instead of exiting.
pub fn reap_forever() -> ! {
    loop {
        match waitpid(None, None) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Starts [`reap_forever`] on a thread of its own, for while the node runs.
pub fn spawn_reaper() -> io::Result<()> {
    std::thread::Builder::new()
        .name("pid1-reaper".into())
        .spawn(|| reap_forever())
        .map(|_| ())
}

/// Whether this process is PID 1.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs_have_owner_only_modes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("tessella");
        let mut sys = LinuxSystem::new();
        sys.create_private_dir(&dir).expect("mkdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        // An existing directory is fine, and made private.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        sys.create_private_dir(&dir).expect("again");
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("policy.json");
        std::fs::write(&file, b"a much longer previous content").expect("old");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        sys.write_private_file(&file, b"abc").expect("write");
        assert_eq!(std::fs::read(&file).expect("read"), b"abc");
        assert_eq!(mode(&file), 0o600);

        // A plain file where the directory should be is an error.
        let not_dir = tmp.path().join("f");
        std::fs::write(&not_dir, b"").expect("file");
        assert!(sys.create_private_dir(&not_dir).is_err());
        // read_file's limit.
        assert_eq!(sys.read_file(&file, 3).expect("3 bytes"), b"abc");
        assert!(sys.read_file(&file, 2).is_err());
    }
}
