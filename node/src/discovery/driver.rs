//! Discovery as a protocol handler: the tokio shell around [`Gossip`].
//!
//! It feeds [`Gossip`] admitted peers, incoming discovery frames (verified on
//! the bounded blocking pool: record signatures are ECDSA checks) and timer
//! ticks, and carries out its outputs: messages go through the transport's
//! bounded discovery outbox (drop-oldest: gossip repairs loss), dials through
//! [`Network::reach`], events to subscribers. It is also the transport's
//! [`AddressBook`]: peer handles find nodes by the addresses in the catalog.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::{
    CatalogEvent, DiscoveryMsg, Gossip, GossipConfig, LocalInfo, Out, PeerRecord, RecordCheck,
};
use crate::id::{NodeId, Tag};
use crate::network::{
    AddressBook, FullPolicy, HandlerFuture, IncomingUni, Network, OutboxPolicy, PeerInfo,
    ProtocolHandler,
};
use crate::wire::{read_frame, CloseCode, FrameError, StreamFamily};

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// Tags advertised in this node's record.
    pub tags: Vec<Tag>,
    /// Time between gossip rounds.
    pub interval: Duration,
    /// How long a silent peer stays in the catalog.
    pub peer_ttl: Duration,
    /// Most peers in the catalog.
    pub max_catalog: usize,
    /// Most peers gossip asks the transport to connect to.
    pub max_connections: usize,
    /// Capacity of the event channel (a slow subscriber lags).
    pub event_queue: usize,
    /// Frames queued per peer before the oldest is dropped.
    pub outbox: usize,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            tags: Vec::new(),
            interval: Duration::from_millis(200),
            peer_ttl: Duration::from_secs(30),
            max_catalog: 1000,
            max_connections: 256,
            event_queue: 1024,
            outbox: 16,
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
}

impl Discovery {
    /// Start discovery on `net`: register the handler, become its address
    /// book, and run gossip rounds every `opts.interval`.
    pub fn start(net: &Network, opts: DiscoveryOptions) -> Result<Arc<Discovery>, DiscoveryError> {
        // Records are checked like Hellos: the same trusted issuers and the
        // same revocations. The skew is set from `config.max_skew`.
        let check = RecordCheck::new(net.ticket_validator(), 0).with_revocations(net.revocations());
        let mut config = GossipConfig::new(check);
        config.interval = opts.interval;
        config.peer_ttl = opts.peer_ttl;
        config.max_entries = opts.max_catalog;
        config.max_connections = opts.max_connections;
        // Room for the frame prefix and postcard's envelope.
        config.max_message_bytes = net.max_frame().saturating_sub(1024);
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
            net.now_ms(),
        )?;
        let (events, _) = broadcast::channel(opts.event_queue.max(1));
        let me = Arc::new(Discovery {
            net: net.clone(),
            gossip: Mutex::new(gossip),
            events,
            outbox: opts.outbox.max(1),
        });
        net.register(me.clone())?;
        net.set_address_book(Arc::new(Book(Arc::downgrade(&me))));
        tokio::spawn(rounds(Arc::downgrade(&me), net.clone(), opts.interval));
        Ok(me)
    }

    fn gossip(&self) -> MutexGuard<'_, Gossip> {
        self.gossip.lock().unwrap_or_else(|p| p.into_inner())
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
                    now_ms.saturating_sub(p.refreshed_ms()) / 1000,
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

    fn dispatch(&self, outs: Vec<Out>) {
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
                    if node_id == self.net.node_id() || self.net.peer(node_id).info().is_some() {
                        continue;
                    }
                    let net = self.net.clone();
                    tokio::spawn(async move { net.reach(node_id, addrs).await });
                }
                Out::Event(event) => {
                    let size = self.gossip().catalog().len();
                    metrics::gauge!("tessella_catalog_size", "node" => self.net.node_id().to_string())
                        .set(size as f64);
                    let _ = self.events.send(event);
                }
            }
        }
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
                    // Records carry ECDSA signatures: verify off the async workers.
                    let me = self.clone();
                    let outs = self
                        .net
                        .run_blocking(move || {
                            let now = me.net.now_ms();
                            me.gossip().on_message(peer, msg, now)
                        })
                        .await
                        .unwrap_or_default();
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
        self.dispatch(outs);
    }

    fn peer_down(&self, peer: NodeId) {
        self.gossip().on_disconnected(peer);
    }

    fn uni(self: Arc<Self>, peer: PeerInfo, stream: IncomingUni) -> HandlerFuture {
        Box::pin(self.serve(peer.node_id(), stream.recv))
    }

    fn shutdown(self: Arc<Self>) -> HandlerFuture {
        Box::pin(self.depart())
    }
}

/// Gossip rounds until the node stops or discovery is dropped.
async fn rounds(me: Weak<Discovery>, net: Network, interval: Duration) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        if net.is_stopping() {
            return;
        }
        let Some(me) = me.upgrade() else { return };
        let now = net.now_ms();
        let mut outs = me.follow_ticket(now);
        outs.extend(me.gossip().on_tick(now));
        me.dispatch(outs);
    }
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
