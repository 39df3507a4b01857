//! Discovery as a protocol handler: the tokio shell around [`Gossip`].
//!
//! It feeds [`Gossip`] admitted peers, incoming discovery frames (verified on
//! the bounded blocking pool: record signatures are ECDSA checks) and timer
//! ticks, and carries out its outputs: messages go through the transport's
//! bounded discovery outbox (drop-oldest: gossip repairs loss), dials through
//! [`Network::reach`], events to subscribers. It is also the transport's
//! [`AddressBook`]: peer handles find nodes by the addresses in the catalog.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};

use super::{
    CatalogEvent, DiscoveryMsg, DiscoveryV1, Gossip, GossipConfig, LocalInfo, Out, PeerRecord,
    RecordCheck, Service,
};
use crate::id::{NodeId, Tag};
use crate::network::{
    AddressBook, FullPolicy, HandlerFuture, IncomingUni, KeepAlive, Network, OutboxPolicy,
    PeerInfo, ProtocolHandler,
};
use crate::wire::{read_frame, CloseCode, FrameError, StreamFamily};

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// Tags advertised in this node's record.
    pub tags: Vec<Tag>,
    /// Failure-detector period: one active peer probed per interval.
    pub interval: Duration,
    /// How long a record lives without a newer one (its owner re-signs it a
    /// quarter of this apart).
    pub peer_ttl: Duration,
    /// How long a suspected peer has to show life before it is declared
    /// failed.
    pub suspicion_timeout: Duration,
    /// Time between anti-entropy exchanges.
    pub sync_interval: Duration,
    /// Time between attempts to reach nodes declared failed.
    pub reconnect_interval: Duration,
    /// Active view size (gossip connections).
    pub active_size: usize,
    /// Passive view size.
    pub passive_size: usize,
    /// Most peers in the catalog.
    pub max_catalog: usize,
    /// Capacity of the event channel (a slow subscriber lags).
    pub event_queue: usize,
    /// Frames queued per peer before the oldest is dropped.
    pub outbox: usize,
    /// Where to rejoin when every active peer is gone (the node's
    /// bootstrap addresses).
    pub bootstrap: Vec<SocketAddr>,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            tags: Vec::new(),
            interval: Duration::from_secs(1),
            peer_ttl: Duration::from_secs(3600),
            suspicion_timeout: Duration::from_secs(5),
            sync_interval: Duration::from_secs(5),
            reconnect_interval: Duration::from_secs(10),
            active_size: 6,
            passive_size: 30,
            max_catalog: 10_000,
            event_queue: 1024,
            outbox: 64,
            bootstrap: Vec::new(),
        }
    }
}

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Signing this node's record failed.
    #[error("signing this node's record: {0}")]
    Record(#[from] super::RecordError),
    /// The transport refused the handler.
    #[error(transparent)]
    Register(#[from] crate::network::RegisterError),
}

/// The running discovery subsystem.
pub struct Discovery {
    net: Network,
    gossip: Mutex<Gossip>,
    events: broadcast::Sender<CatalogEvent>,
    outbox: usize,
    /// Connections of active-view peers, held open.
    kept: Mutex<HashMap<NodeId, KeepAlive>>,
    bootstrap: Vec<SocketAddr>,
    /// Wakes the timer task early (new work before its deadline).
    wake: Notify,
    /// Itself, for work started from `&self` callbacks.
    me: Weak<Discovery>,
}

impl Discovery {
    /// Start discovery on `net`: register the handler, become its address
    /// book, and run the protocol's timers.
    pub fn start(net: &Network, opts: DiscoveryOptions) -> Result<Arc<Discovery>, DiscoveryError> {
        let mut config = GossipConfig::new(net.network_id());
        config.probe_interval = opts.interval;
        config.probe_timeout = opts.interval * 2 / 5;
        config.suspicion_timeout = opts.suspicion_timeout;
        config.sync_interval = opts.sync_interval;
        config.reconnect_interval = opts.reconnect_interval;
        config.record_ttl = opts.peer_ttl;
        config.refresh_interval = opts.peer_ttl / 4;
        config.active_size = opts.active_size;
        config.passive_size = opts.passive_size;
        config.max_entries = opts.max_catalog;
        // Room for the frame prefix and postcard's envelope.
        config.max_message_bytes = net.max_frame().saturating_sub(1024);
        // Records are checked like Hellos: the same trusted issuers and the
        // same revocations.
        let verifier = Arc::new(
            RecordCheck::new(net.ticket_validator(), config.max_skew.as_secs())
                .with_revocations(net.revocations()),
        );
        let gossip = Gossip::new(
            net.certificate(),
            LocalInfo {
                addrs: vec![net.local_addr()],
                tags: opts.tags.iter().map(|t| t.0).collect(),
                services: Vec::new(),
                ticket: net.ticket(),
                software: format!("tessella {}", env!("CARGO_PKG_VERSION")),
            },
            config,
            verifier,
            net.now_ms(),
        )?;
        let (events, _) = broadcast::channel(opts.event_queue.max(1));
        let me = Arc::new_cyclic(|me| Discovery {
            me: me.clone(),
            net: net.clone(),
            gossip: Mutex::new(gossip),
            events,
            outbox: opts.outbox.max(1),
            kept: Mutex::new(HashMap::new()),
            bootstrap: opts.bootstrap,
            wake: Notify::new(),
        });
        net.register(me.clone())?;
        net.set_address_book(Arc::new(Book(Arc::downgrade(&me))));
        tokio::spawn(timers(Arc::downgrade(&me), net.clone()));
        Ok(me)
    }

    fn gossip(&self) -> MutexGuard<'_, Gossip> {
        self.gossip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Known peers (connected or learned through gossip), excluding self.
    pub fn catalog(&self) -> Vec<PeerRecord> {
        self.gossip()
            .catalog()
            .iter()
            .map(|p| p.record().clone())
            .collect()
    }

    /// Catalog entries with seconds since each was last refreshed.
    pub fn catalog_peers(&self) -> Vec<(PeerRecord, u64)> {
        let now_ms = self.net.now_ms();
        self.gossip()
            .catalog()
            .iter()
            .map(|p| {
                (
                    p.record().clone(),
                    now_ms.saturating_sub(p.issued_ms()) / 1000,
                )
            })
            .collect()
    }

    /// Catalog events from now on (bounded: a slow receiver lags).
    pub fn subscribe(&self) -> broadcast::Receiver<CatalogEvent> {
        self.events.subscribe()
    }

    /// Gossip counters.
    pub fn stats(&self) -> super::GossipStats {
        self.gossip().stats()
    }

    /// Re-sign this node's record when the transport's ticket changed
    /// (installed, renewed): peers refuse a record whose ticket expired, so
    /// the record must carry the current one.
    fn follow_ticket(&self, now_ms: u64) -> Vec<Out> {
        let ticket = self.net.ticket();
        let mut gossip = self.gossip();
        let own = gossip.own_record();
        if own.ticket == ticket || gossip.is_departed() {
            return Vec::new();
        }
        let local = LocalInfo {
            addrs: own.addrs.clone(),
            tags: own.tags.clone(),
            services: own.services.clone(),
            ticket,
            software: own.software.clone(),
        };
        match gossip.set_local(local, now_ms) {
            Ok(outs) => {
                tracing::debug!("discovery: record re-signed with the renewed ticket");
                outs
            }
            Err(e) => {
                tracing::warn!(error = %e, "discovery: cannot re-sign the record with the new ticket");
                Vec::new()
            }
        }
    }

    /// Advertise `service` in this node's record: re-signed and pushed to
    /// the active view at once; peers see [`CatalogEvent::Updated`]. Returns
    /// whether it was new. Fails when the record would exceed its bounds.
    pub fn advertise(&self, service: Service) -> Result<bool, DiscoveryError> {
        self.change_services(|s| {
            if s.contains(&service) {
                return false;
            }
            s.push(service);
            true
        })
    }

    /// Withdraw `service` from this node's record. Returns whether it was
    /// advertised.
    pub fn withdraw(&self, service: &Service) -> Result<bool, DiscoveryError> {
        self.change_services(|s| {
            let before = s.len();
            s.retain(|x| x != service);
            s.len() != before
        })
    }

    /// Services this node advertises.
    pub fn services(&self) -> Vec<Service> {
        self.gossip().own_record().services.clone()
    }

    /// Catalogued peers advertising a service that satisfies `pred`.
    pub fn providers(&self, pred: impl Fn(&Service) -> bool) -> Vec<PeerRecord> {
        self.gossip()
            .catalog()
            .iter()
            .filter(|p| p.record().services.iter().any(&pred))
            .map(|p| p.record().clone())
            .collect()
    }

    /// Like [`Discovery::providers`], with each record's verified ticket
    /// claims, for subsystems that check grants before acting on an
    /// advertisement.
    pub fn verified_providers(
        &self,
        pred: impl Fn(&Service) -> bool,
    ) -> Vec<Arc<super::record::VerifiedRecord>> {
        self.gossip()
            .catalog()
            .iter()
            .filter(|p| p.record().services.iter().any(&pred))
            .map(|p| p.verified().clone())
            .collect()
    }

    fn change_services(
        &self,
        change: impl FnOnce(&mut Vec<Service>) -> bool,
    ) -> Result<bool, DiscoveryError> {
        let now = self.net.now_ms();
        let outs = {
            let mut gossip = self.gossip();
            let own = gossip.own_record();
            let mut services = own.services.clone();
            if !change(&mut services) {
                return Ok(false);
            }
            let local = LocalInfo {
                addrs: own.addrs.clone(),
                tags: own.tags.clone(),
                services,
                ticket: own.ticket.clone(),
                software: own.software.clone(),
            };
            gossip.set_local(local, now)?
        };
        self.dispatch_detached(outs);
        Ok(true)
    }

    /// Active and passive views (for status and tests).
    pub fn views(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let g = self.gossip();
        (g.active(), g.passive().to_vec())
    }

    fn kept(&self) -> MutexGuard<'_, HashMap<NodeId, KeepAlive>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch_detached(&self, outs: Vec<Out>) {
        if let Some(me) = self.me.upgrade() {
            me.dispatch(outs);
        }
    }

    fn dispatch(self: &Arc<Self>, outs: Vec<Out>) {
        for out in outs {
            match out {
                Out::Send { to, msg } => {
                    match self.net.peer(to).send(StreamFamily::Discovery, &msg) {
                        Ok(()) => {
                            metrics::counter!("tessella_gossip_messages_total", "direction" => "out")
                                .increment(1);
                        }
                        Err(e) => tracing::debug!(peer = %to, error = %e, "gossip not queued"),
                    }
                }
                Out::Connect { node_id, addrs } => {
                    if self.net.is_stopping() {
                        continue;
                    }
                    let me = self.clone();
                    tokio::spawn(async move {
                        let reached = me.net.reach(node_id, addrs).await;
                        let now = me.net.now_ms();
                        let outs = if reached {
                            // Already connected gives no new peer-up: say so.
                            me.gossip().on_connected(node_id, now)
                        } else {
                            me.gossip().on_connect_failed(node_id, now)
                        };
                        me.dispatch(outs);
                    });
                }
                Out::Keep(peer) => {
                    let guard = self.net.peer(peer).keep_alive();
                    self.kept().insert(peer, guard);
                }
                Out::Release(peer) => {
                    self.kept().remove(&peer);
                    // Let a Disconnect already queued go out first.
                    let me = Arc::downgrade(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(RELEASE_GRACE).await;
                        let Some(me) = me.upgrade() else { return };
                        if !me.gossip().active().contains(&peer) && !me.kept().contains_key(&peer) {
                            me.net.peer(peer).release();
                        }
                    });
                }
                Out::Event(event) => {
                    let size = self.gossip().catalog().len();
                    metrics::gauge!("tessella_catalog_size", "node" => self.net.node_id().to_string())
                        .set(size as f64);
                    let _ = self.events.send(event);
                }
            }
        }
        self.wake.notify_one();
    }

    async fn serve(self: Arc<Self>, peer: NodeId, mut recv: quinn::RecvStream) {
        let max = self.net.max_frame();
        loop {
            match read_frame::<_, DiscoveryMsg>(&mut recv, max).await {
                Ok(Some(msg)) => {
                    if let Err(e) = msg.check_bounds() {
                        tracing::warn!(peer = %peer, error = %e, "discovery message over its bounds");
                        let _ = recv.stop(CloseCode::ProtocolViolation.into());
                        return;
                    }
                    metrics::counter!("tessella_gossip_messages_total", "direction" => "in")
                        .increment(1);
                    let outs = if carries_records(&msg) {
                        // Records carry signatures and tickets: verify off
                        // the async workers.
                        let me = self.clone();
                        self.net
                            .run_blocking(move || {
                                let now = me.net.now_ms();
                                me.gossip().on_message(peer, msg, now)
                            })
                            .await
                            .unwrap_or_default()
                    } else {
                        let now = self.net.now_ms();
                        self.gossip().on_message(peer, msg, now)
                    };
                    self.dispatch(outs);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "malformed discovery frame");
                    let code = e.close_code();
                    let _ = recv.stop(code.into());
                    if matches!(e, FrameError::TooLarge { .. }) {
                        self.net.close_peer(&peer, code, "frame too large");
                    }
                    return;
                }
            }
        }
    }

    /// Send the signed departure to every connected peer and wait (bounded
    /// by the transport's grace period) until each acknowledged it.
    async fn depart(self: Arc<Self>) {
        let outs = self.gossip().depart(self.net.now_ms()).unwrap_or_default();
        let mut acked = tokio::task::JoinSet::new();
        for out in outs {
            let Out::Send { to, msg } = out else { continue };
            let peer = self.net.peer(to);
            let max = self.net.max_frame();
            acked.spawn(async move {
                let Ok(mut send) = peer.open_uni(StreamFamily::Discovery).await else {
                    return;
                };
                if crate::wire::write_frame(&mut send, &msg, max).await.is_ok()
                    && send.finish().is_ok()
                {
                    // Closing the endpoint drops unsent data: wait for the ack.
                    let _ = send.stopped().await;
                }
            });
        }
        while acked.join_next().await.is_some() {}
    }
}

impl ProtocolHandler for Discovery {
    fn family(&self) -> StreamFamily {
        StreamFamily::Discovery
    }

    fn outbox(&self) -> OutboxPolicy {
        OutboxPolicy {
            capacity: self.outbox,
            full: FullPolicy::DropOldest,
            ..OutboxPolicy::default()
        }
    }

    fn peer_up(&self, peer: &PeerInfo) {
        let outs = self
            .gossip()
            .on_connected(peer.node_id(), self.net.now_ms());
        self.dispatch_detached(outs);
    }

    fn peer_down(&self, peer: NodeId) {
        let outs = self.gossip().on_disconnected(peer, self.net.now_ms());
        self.dispatch_detached(outs);
    }

    fn uni(self: Arc<Self>, peer: PeerInfo, stream: IncomingUni) -> HandlerFuture {
        Box::pin(self.serve(peer.node_id(), stream.recv))
    }

    fn shutdown(self: Arc<Self>) -> HandlerFuture {
        Box::pin(self.depart())
    }
}

/// The protocol's timers until the node stops or discovery is dropped:
/// sleep until [`Gossip::poll_timeout`] (or new work), tick, and rejoin
/// through the bootstrap addresses when no peer is left.
async fn timers(me: Weak<Discovery>, net: Network) {
    let mut alone_since: Option<u64> = None;
    loop {
        let deadline = {
            let Some(me) = me.upgrade() else { return };
            let now = net.now_ms();
            let due = me.gossip().poll_timeout().unwrap_or(now + MAX_SLEEP_MS);
            let wait = due.saturating_sub(now).min(MAX_SLEEP_MS);
            let wake = async { me.wake.notified().await };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait.max(MIN_SLEEP_MS))) => {}
                _ = wake => {}
            }
            due
        };
        if net.is_stopping() {
            return;
        }
        let Some(me) = me.upgrade() else { return };
        let now = net.now_ms();
        if now + 1 < deadline {
            continue;
        }
        let mut outs = me.follow_ticket(now);
        outs.extend(me.gossip().on_tick(now));
        me.dispatch(outs);
        let alone = me.gossip().active().is_empty();
        match (alone, alone_since) {
            (false, _) => alone_since = None,
            (true, None) => alone_since = Some(now),
            (true, Some(t)) if now.saturating_sub(t) >= REJOIN_AFTER_MS => {
                alone_since = Some(now);
                for addr in me.bootstrap.clone() {
                    let net = net.clone();
                    tokio::spawn(async move {
                        if let Err(e) = net.connect(addr).await {
                            tracing::debug!(%addr, error = %e, "discovery: rejoin dial failed");
                        }
                    });
                }
            }
            (true, Some(_)) => {}
        }
    }
}

/// Longest the timer task sleeps without checking for work.
const MAX_SLEEP_MS: u64 = 500;
/// Shortest sleep (coalesces bursts of wake-ups).
const MIN_SLEEP_MS: u64 = 5;
/// How long a node without active peers waits before dialling its
/// bootstrap addresses again.
const REJOIN_AFTER_MS: u64 = 5_000;
/// How long a released connection stays open for queued messages.
const RELEASE_GRACE: Duration = Duration::from_millis(500);

/// Whether handling `msg` may verify records (and so belongs on the
/// blocking pool).
fn carries_records(msg: &DiscoveryMsg) -> bool {
    let DiscoveryMsg::V1(m) = msg;
    matches!(
        m,
        DiscoveryV1::Push { .. }
            | DiscoveryV1::Join { .. }
            | DiscoveryV1::ForwardJoin { .. }
            | DiscoveryV1::Neighbor { .. }
    )
}

/// The catalog as the transport's address book.
struct Book(Weak<Discovery>);

impl AddressBook for Book {
    fn addresses(&self, node: &NodeId) -> Vec<SocketAddr> {
        self.0
            .upgrade()
            .and_then(|d| {
                d.gossip()
                    .catalog()
                    .iter()
                    .find(|p| p.record().node_id == *node)
                    .map(|p| p.record().addrs.clone())
            })
            .unwrap_or_default()
    }
}
