//! The file systems PID 1 mounts: the kernel's views (`/proc`, `/sys`,
//! `/dev`), scratch space (`/tmp`, `/run`) and, once its module is loaded,
//! configfs (where configfs-tsm hands out quotes).

/// One mount(2) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    /// The source (for pseudo file systems, by convention their type).
    pub source: &'static str,
    /// The mount point; it must exist (the image ships the directories,
    /// except `/sys/kernel/config`, which sysfs provides).
    pub target: &'static str,
    /// The file system type.
    pub fstype: &'static str,
    /// `nosuid`.
    pub nosuid: bool,
    /// `nodev`.
    pub nodev: bool,
    /// `noexec`.
    pub noexec: bool,
    /// File-system specific options, e.g. `mode=1777`.
    pub data: Option<&'static str>,
}

/// Mounted before anything else, in this order (`/sys` must precede
/// `/sys/kernel/config`).
pub const EARLY: [Mount; 5] = [
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        nosuid: true,
        nodev: true,
        noexec: true,
        data: None,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        nosuid: true,
        nodev: true,
        noexec: true,
        data: None,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        nosuid: true,
        nodev: false,
        noexec: true,
        data: Some("mode=0755"),
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        nosuid: true,
        nodev: true,
        noexec: false,
        data: Some("mode=1777"),
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        nosuid: true,
        nodev: true,
        noexec: false,
        data: Some("mode=0755"),
    },
];

/// configfs, mounted after the modules (the Debian kernel builds it as a
/// module); configfs-tsm lives under it.
pub const CONFIGFS: Mount = Mount {
    source: "configfs",
    target: "/sys/kernel/config",
    fstype: "configfs",
    nosuid: true,
    nodev: true,
    noexec: true,
    data: None,
};
