//! The guest's network: `lo` up, then the configured interface (`[guest]`)
//! up with a static address and a default route. No DHCP, no DNS.
//!
//! [`bring_up`] is the sequencing over [`System`]; [`Netlink`] is the real
//! thing (rtnetlink over a netlink socket, on a small runtime of its own
//! because PID 1 sets the network up before the node's runtime exists).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{GuestConfig, InterfaceAddress};

use super::{InitError, System};

/// How often to look for the interface while waiting for it.
pub const LINK_POLL: Duration = Duration::from_millis(50);

/// Where the kernel lists network interfaces.
pub fn sysfs_dir(ifname: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(ifname)
}

/// Waits (at most `guest.link_timeout_ms`) for the interface to appear
/// (virtio_net probes its device asynchronously after the module loads),
/// then brings `lo` and it up, adds the address and, if any, the default
/// route through the gateway.
pub fn bring_up(sys: &mut dyn System, guest: &GuestConfig) -> Result<(), InitError> {
    let net_err = |step: &'static str, ifname: &str| {
        let ifname = ifname.to_string();
        move |source: io::Error| InitError::Network {
            step,
            ifname,
            source,
        }
    };
    sys.link_up("lo").map_err(net_err("bringing up", "lo"))?;
    sys.console("lo up");
    let name = &guest.interface;
    let dir = sysfs_dir(name);
    let polls = guest
        .link_timeout_ms
        .div_ceil(LINK_POLL.as_millis() as u64)
        .max(1);
    let mut waited = 0u64;
    while !sys.exists(&dir) {
        if waited >= polls {
            return Err(InitError::NoInterface {
                ifname: name.clone(),
                timeout_ms: guest.link_timeout_ms,
            });
        }
        if waited == 0 {
            sys.console(&format!("waiting for {name}"));
        }
        sys.sleep(LINK_POLL);
        waited += 1;
    }
    sys.link_up(name).map_err(net_err("bringing up", name))?;
    sys.add_address(name, guest.address)
        .map_err(net_err("adding the address to", name))?;
    match guest.gateway {
        Some(gw) => {
            sys.add_default_route(name, gw)
                .map_err(net_err("adding the default route through", name))?;
            sys.console(&format!("{name} up {} via {gw}", guest.address));
        }
        None => sys.console(&format!("{name} up {} (no default route)", guest.address)),
    }
    Ok(())
}

/// A netlink connection for the guest's few network changes.
pub struct Netlink {
    runtime: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

fn netlink_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

impl Netlink {
    /// Opens the netlink socket (on its own current-thread runtime).
    pub fn connect() -> io::Result<Netlink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let handle = runtime.block_on(async {
            let (connection, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(connection);
            Ok::<_, io::Error>(handle)
        })?;
        Ok(Netlink { runtime, handle })
    }

    /// `ip link set dev <index> up`.
    pub fn link_up(&self, index: u32) -> io::Result<()> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        self.runtime
            .block_on(self.handle.link().set(msg).execute())
            .map_err(netlink_io)
    }

    /// `ip addr add <addr> dev <index>`.
    pub fn add_address(&self, index: u32, addr: InterfaceAddress) -> io::Result<()> {
        self.runtime
            .block_on(
                self.handle
                    .address()
                    .add(index, addr.ip, addr.prefix)
                    .execute(),
            )
            .map_err(netlink_io)
    }

    /// `ip route add default via <gateway> dev <index>`.
    pub fn add_default_route(&self, index: u32, gateway: IpAddr) -> io::Result<()> {
        // The family-typed builders: the untyped one refuses a gateway
        // before its family is set.
        let route = match gateway {
            IpAddr::V4(gw) => rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            IpAddr::V6(gw) => rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        self.runtime
            .block_on(self.handle.route().add(route).execute())
            .map_err(netlink_io)
    }
}
