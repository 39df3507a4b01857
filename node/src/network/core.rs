//! The transport's shared state and its tokio shell: dialling and accepting
//! (handshake, then admission), handing admitted connections to the
//! [`PeerTable`], carrying out its actions, and the periodic sweep
//! (ticket expiry, idle connections, certificate and ticket renewal).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use quinn::{Connection, Endpoint};
use serde::Serialize;
use tessella_attestation::clock::Clock;
use tessella_attestation::provider::QuoteProvider;
use tessella_attestation::ratls::{CertResolver, PeerIdentity, RatlsVerifier};
use tessella_attestation::TicketValidator;
use tokio::sync::{watch, Semaphore};

use super::builder::{own_ticket, Limits, TicketSource};
use super::control;
use super::handler::{Handlers, PeerInfo, ProtocolHandler};
use super::outbox::{Link, OutboxPolicy, Outboxes, SendError};
use super::peers::{Action, Offer, PeerTable};
use super::session;
use crate::admission::{self, Admitted, ControlMsg, Hello, Refused, RevocationView, Revocations};
use crate::id::{NetworkId, NodeId};
use crate::relay::Pending;
use crate::wire::frame::encode_frame;
use crate::wire::{CloseCode, StreamFamily};

/// How long a peer has to complete the QUIC handshake and admission.
pub(crate) const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a peer handle finds a node's addresses (discovery provides it).
pub trait AddressBook: Send + Sync + 'static {
    /// The addresses `node` advertises, best first.
    fn addresses(&self, node: &NodeId) -> Vec<SocketAddr>;
}

/// What queueing one message needs: see [`Core::outgoing`].
type Outgoing = (Vec<u8>, OutboxPolicy, Arc<dyn Link>);

pub(crate) struct Core {
    pub(crate) name: String,
    pub(crate) network: NetworkId,
    pub(crate) node_id: NodeId,
    pub(crate) mode: &'static str,
    pub(crate) started_at: u64,
    /// Node time: the clock at start plus monotonic time since, so timers
    /// advance even under a frozen test clock.
    pub(crate) start_ms: u64,
    pub(crate) started: Instant,
    /// Random per start: see [`crate::admission::Hello::incarnation`].
    pub(crate) incarnation: u64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) endpoint: Endpoint,
    pub(crate) local_addr: SocketAddr,
    pub(crate) resolver: Arc<CertResolver>,
    pub(crate) verifier: Arc<RatlsVerifier>,
    pub(crate) validator: TicketValidator,
    pub(crate) provider: Arc<dyn QuoteProvider>,
    /// This node's ticket and its expiry.
    pub(crate) ticket: Mutex<(String, u64)>,
    pub(crate) ticket_source: TicketSource,
    pub(crate) cert_lifetime: u64,
    pub(crate) limits: Limits,
    pub(crate) table: Mutex<PeerTable<Connection>>,
    /// Addresses being dialled now (one dial per address at a time).
    pub(crate) dialing: Mutex<HashSet<SocketAddr>>,
    pub(crate) handlers: Handlers,
    pub(crate) outboxes: Outboxes,
    /// Watches of peers' sessions, for peer handles. Entries without
    /// receivers are dropped when their peer goes down.
    pub(crate) watches: Mutex<HashMap<NodeId, watch::Sender<Option<PeerInfo>>>>,
    pub(crate) addresses: RwLock<Option<Arc<dyn AddressBook>>>,
    /// Relayed collateral waiting for a quote to verify it with.
    pub(crate) pending: Mutex<Pending>,
    /// Revoked ticket ids and node ids.
    pub(crate) revoked: RevocationView,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// A certificate renewal is under way (at most one).
    pub(crate) renewing: AtomicBool,
    /// Bounds blocking verification work (collateral, record signatures).
    pub(crate) verify_permits: Semaphore,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn close(conn: &Connection, code: CloseCode, reason: &str) {
    conn.close(code.into(), reason.as_bytes());
}

impl Link for Core {
    fn connection(&self, peer: &NodeId) -> Option<Connection> {
        lock(&self.table).get(peer).map(|s| s.conn.clone())
    }

    fn touch(&self, peer: &NodeId) {
        let now = self.now_ms();
        lock(&self.table).touch(peer, now);
    }
}

impl Core {
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_unix()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.start_ms
            .saturating_add(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, PeerTable<Connection>> {
        lock(&self.table)
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    pub(crate) fn revocations(&self) -> MutexGuard<'_, Revocations> {
        self.revoked.lock()
    }

    pub(crate) fn own_ticket(&self) -> (String, u64) {
        lock(&self.ticket).clone()
    }

    pub(crate) fn connected_ids(&self) -> Vec<NodeId> {
        self.table().iter().map(|(id, _)| *id).collect()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Run blocking work (signature checks, dcap-qvl) on the blocking pool,
    /// at most a few at a time.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _permit = self.verify_permits.acquire().await.ok()?;
        tokio::task::spawn_blocking(f).await.ok()
    }

    fn hello(&self) -> ControlMsg {
        ControlMsg::V1(Hello {
            network: self.network,
            ticket: self.own_ticket().0,
            software: env!("CARGO_PKG_VERSION").to_string(),
            incarnation: self.incarnation,
        })
    }

    pub(crate) fn info(&self, peer: &NodeId) -> Option<PeerInfo> {
        let table = self.table();
        let s = table.get(peer)?;
        Some(PeerInfo {
            identity: s.admitted.identity.clone(),
            claims: s.admitted.claims.clone(),
            addr: s.conn.remote_address(),
        })
    }

    fn peer_identity(&self, conn: &Connection) -> Option<Arc<PeerIdentity>> {
        let certs = conn
            .peer_identity()?
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        self.verifier.peer_identity(certs.first()?.as_ref())
    }

    fn refuse(&self, conn: &Connection, who: Option<NodeId>, r: &Refused) {
        tracing::warn!(peer = ?who, code = ?r.code, reason = %r.reason, "admission refused");
        metrics::counter!("tessella_admissions_refused_total", "reason" => r.label).increment(1);
        close(conn, r.code, &r.reason);
    }

    /// Close `peer`'s connection (if any) with `code`.
    /// Close `peer`'s connection unless a subsystem holds it open.
    pub(crate) fn release(&self, peer: &NodeId) {
        let conn = {
            let table = self.table();
            table
                .get(peer)
                .filter(|s| s.pins == 0)
                .map(|s| s.conn.clone())
        };
        if let Some(conn) = conn {
            tracing::debug!(peer = %peer, "closing a released connection");
            close(&conn, CloseCode::Normal, "released");
        }
    }

    pub(crate) fn close_peer(&self, peer: &NodeId, code: CloseCode, reason: &str) {
        if let Some(conn) = self.connection(peer) {
            close(&conn, code, reason);
        }
    }

    /// The encoded frame, the family's queue policy (its handler's; the
    /// default for a family without one) and the link the writer uses.
    fn outgoing<T: Serialize + ?Sized>(
        self: &Arc<Self>,
        family: StreamFamily,
        msg: &T,
    ) -> Result<Outgoing, SendError> {
        let frame = encode_frame(msg, self.limits.max_frame)?;
        let policy = self
            .handlers
            .get(family)
            .map(|h| h.outbox())
            .unwrap_or_default();
        let link: Arc<dyn Link> = self.clone();
        Ok((frame, policy, link))
    }

    /// Queue `msg` for `peer` on `family` without waiting.
    pub(crate) fn send_to<T: Serialize + ?Sized>(
        self: &Arc<Self>,
        peer: NodeId,
        family: StreamFamily,
        msg: &T,
    ) -> Result<(), SendError> {
        let (frame, policy, link) = self.outgoing(family, msg)?;
        self.outboxes.try_send(&link, peer, family, policy, frame)
    }

    /// Queue `msg` for `peer`, waiting for room when the family applies
    /// backpressure.
    pub(crate) async fn send_to_wait<T: Serialize + ?Sized>(
        self: &Arc<Self>,
        peer: NodeId,
        family: StreamFamily,
        msg: &T,
    ) -> Result<(), SendError> {
        let (frame, policy, link) = self.outgoing(family, msg)?;
        self.outboxes.send(&link, peer, family, policy, frame).await
    }

    /// Carry out the peer table's decisions: closes, and peer events to the
    /// handlers and watches. Never called under the table lock.
    pub(crate) fn apply(&self, actions: Vec<Action<Connection>>) {
        for action in actions {
            match action {
                Action::Close {
                    conn,
                    peer,
                    code,
                    reason,
                } => {
                    tracing::info!(peer = %peer, %code, reason, "closing session");
                    close(&conn, code, reason);
                }
                Action::Up(peer) => {
                    let Some(info) = self.info(&peer) else {
                        continue;
                    };
                    for h in self.handlers.all() {
                        h.peer_up(&info);
                    }
                    self.publish(peer, Some(info));
                }
                Action::Updated(peer) => {
                    let Some(info) = self.info(&peer) else {
                        continue;
                    };
                    for h in self.handlers.all() {
                        h.peer_updated(&info);
                    }
                    self.publish(peer, Some(info));
                }
                Action::Down(peer) => {
                    self.outboxes.peer_down(&peer);
                    for h in self.handlers.all() {
                        h.peer_down(peer);
                    }
                    self.publish(peer, None);
                }
            }
        }
        let peers = self.table().len();
        metrics::gauge!("tessella_peers", "node" => self.node_id.to_string()).set(peers as f64);
    }

    fn publish(&self, peer: NodeId, info: Option<PeerInfo>) {
        let mut watches = lock(&self.watches);
        let gone = info.is_none();
        if let Some(tx) = watches.get(&peer) {
            tx.send_replace(info);
            if gone && tx.receiver_count() == 0 {
                watches.remove(&peer);
            }
        }
    }

    /// A watch of `peer`'s session (None while it has none).
    pub(crate) fn watch(&self, peer: NodeId) -> watch::Receiver<Option<PeerInfo>> {
        let current = self.info(&peer);
        let mut watches = lock(&self.watches);
        // Bounded by peers with a live session plus peers someone watches.
        watches.retain(|id, tx| tx.receiver_count() > 0 || self.connection(id).is_some());
        watches
            .entry(peer)
            .or_insert_with(|| watch::channel(current).0)
            .subscribe()
    }

    /// Register a handler: it hears about every peer already up, then about
    /// every change.
    pub(crate) fn register(
        self: &Arc<Self>,
        h: Arc<dyn ProtocolHandler>,
    ) -> Result<(), super::RegisterError> {
        if self.is_stopping() {
            return Err(super::RegisterError::Stopping);
        }
        self.handlers.insert(h.clone())?;
        for peer in self.connected_ids() {
            if let Some(info) = self.info(&peer) {
                h.peer_up(&info);
            }
        }
        Ok(())
    }

    /// An admitted connection: keep it (and serve it) or close it.
    fn admitted(self: &Arc<Self>, conn: Connection, admitted: Admitted, dialer: NodeId) -> bool {
        let peer = admitted.identity.node_id;
        let entry = admitted.identity.matched_entry.clone();
        let tcb = admitted.identity.tcb_status.clone();
        let expires = admitted.ticket_expires();
        let offer = self.table().offer(
            conn.clone(),
            conn.stable_id() as u64,
            admitted,
            dialer,
            self.now_ms(),
            |c| c.close_reason().is_none(),
        );
        match offer {
            Offer::Duplicate => {
                close(&conn, CloseCode::Normal, "duplicate connection");
                false
            }
            Offer::Full => {
                self.refuse(
                    &conn,
                    Some(peer),
                    &Refused::new(CloseCode::AdmissionRefused, "too many peers"),
                );
                false
            }
            Offer::Kept(actions) => {
                tracing::info!(peer = %peer, entry = ?entry, tcb = %tcb, ticket_expires = expires, "peer admitted");
                self.apply(actions);
                tokio::spawn(session::serve(self.clone(), conn, peer));
                true
            }
        }
    }

    /// Dial `addr`, run admission, and register the peer. Returns its node id.
    pub(crate) async fn dial(self: &Arc<Self>, addr: SocketAddr) -> Result<NodeId, String> {
        if self.is_stopping() {
            return Err("node is stopping".into());
        }
        let started = Instant::now();
        let connecting = self
            .endpoint
            .connect(addr, "tessella")
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(ADMISSION_TIMEOUT, connecting)
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| e.to_string())?;
        metrics::histogram!("tessella_handshake_seconds", "direction" => "out")
            .record(started.elapsed().as_secs_f64());
        let identity = self
            .peer_identity(&conn)
            .ok_or_else(|| "no verified peer identity".to_string())?;
        let peer = identity.node_id;
        let outcome = tokio::time::timeout(
            ADMISSION_TIMEOUT,
            control::dial_hello(&conn, &self.hello(), self.limits.max_frame),
        )
        .await
        .map_err(|_| "admission timed out".to_string())?;
        let hello = match outcome {
            Ok(h) => h,
            Err(e) => {
                let reason = conn.close_reason().map(|r| r.to_string()).unwrap_or(e);
                tracing::warn!(peer = %peer, %addr, reason = %reason, "peer refused us");
                return Err(reason);
            }
        };
        let decision = admission::admit(
            identity,
            &hello,
            &self.network,
            &self.validator,
            &self.revocations(),
            self.now(),
        );
        match decision {
            Ok(admitted) => {
                self.admitted(conn, admitted, self.node_id);
                Ok(peer)
            }
            Err(r) => {
                self.refuse(&conn, Some(peer), &r);
                Err(r.reason)
            }
        }
    }

    /// Dial each of `addrs` until `node` is reached, unless it is connected
    /// or being dialled already.
    pub(crate) async fn reach(self: &Arc<Self>, node: NodeId, addrs: Vec<SocketAddr>) -> bool {
        for addr in addrs {
            if self.connection(&node).is_some() {
                return true;
            }
            if !lock(&self.dialing).insert(addr) {
                continue;
            }
            let reached = self.dial(addr).await;
            lock(&self.dialing).remove(&addr);
            match reached {
                Ok(id) if id == node => return true,
                Ok(other) => {
                    // The address now belongs to another node, admitted on its
                    // own merits: keep it.
                    tracing::debug!(wanted = %node, reached = %other, %addr, "address reached another node");
                }
                Err(e) => tracing::debug!(peer = %node, %addr, error = %e, "dial failed"),
            }
        }
        self.connection(&node).is_some()
    }

    pub(crate) async fn accept(self: Arc<Self>, incoming: quinn::Incoming) {
        let started = Instant::now();
        let conn = match tokio::time::timeout(ADMISSION_TIMEOUT, incoming).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "incoming handshake failed");
                metrics::counter!("tessella_admissions_refused_total", "reason" => "handshake")
                    .increment(1);
                return;
            }
            Err(_) => return,
        };
        metrics::histogram!("tessella_handshake_seconds", "direction" => "in")
            .record(started.elapsed().as_secs_f64());
        let Some(identity) = self.peer_identity(&conn) else {
            close(&conn, CloseCode::AdmissionRefused, "no verified identity");
            return;
        };
        let peer = identity.node_id;
        let hello = tokio::time::timeout(
            ADMISSION_TIMEOUT,
            control::accept_hello(&conn, self.limits.max_frame),
        )
        .await;
        let (mut send, hello) = match hello {
            Ok(Ok(v)) => v,
            Ok(Err(r)) => return self.refuse(&conn, Some(peer), &r),
            Err(_) => {
                return self.refuse(
                    &conn,
                    Some(peer),
                    &Refused::new(CloseCode::AdmissionRefused, "admission timed out"),
                )
            }
        };
        let decision = admission::admit(
            identity,
            &hello,
            &self.network,
            &self.validator,
            &self.revocations(),
            self.now(),
        );
        match decision {
            Ok(admitted) => {
                let hello = self.hello();
                let reply = crate::wire::write_frame(&mut send, &hello, self.limits.max_frame);
                if tokio::time::timeout(ADMISSION_TIMEOUT, reply)
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    return;
                }
                let _ = send.finish();
                self.admitted(conn, admitted, peer);
            }
            Err(r) => self.refuse(&conn, Some(peer), &r),
        }
    }

    /// A session task ended: tell the table.
    pub(crate) fn session_ended(&self, peer: NodeId, conn: &Connection) {
        let action = self.table().closed(peer, conn.stable_id() as u64);
        self.apply(action.into_iter().collect());
    }

    /// Revoke `id` and close the sessions it covers.
    pub(crate) fn revoke(&self, id: &str) -> Option<usize> {
        if !self.revocations().revoke(id) {
            return None;
        }
        let closes = {
            let revoked = self.revocations();
            self.table().revoked(&revoked)
        };
        let n = closes.len();
        self.apply(closes);
        tracing::warn!(id, sessions = n, "ticket revoked");
        Some(n)
    }

    /// The periodic sweep.
    pub(crate) fn tick(self: &Arc<Self>) {
        {
            let me = self.clone();
            if !self.pending().is_empty() {
                tokio::spawn(async move {
                    let inner = me.clone();
                    me.blocking(move || inner.retry_pending()).await;
                });
            }
        }
        let now = self.now();
        let sweep = self.table().sweep(
            now,
            self.validator.leeway(),
            self.now_ms(),
            u64::try_from(self.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX),
        );
        self.apply(sweep);
        if self.resolver.current().renewal_due(now) && !self.renewing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::task::spawn_blocking(move || {
                match me
                    .resolver
                    .renew_if_due(&*me.provider, &me.network, now, me.cert_lifetime)
                {
                    Ok(true) => tracing::info!("certificate renewed"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "certificate renewal failed"),
                }
                me.renewing.store(false, Ordering::Release);
            });
        }
        if let TicketSource::Issuer(_, ttl) | TicketSource::IssuerGranting(_, ttl, _) =
            self.ticket_source
        {
            // Self-issued tickets are renewed at two thirds of their life.
            let renewed = {
                let mut own = lock(&self.ticket);
                if now >= own.1.saturating_sub(ttl / 3) {
                    match own_ticket(&self.ticket_source, &self.name, self.node_id, now) {
                        Ok(t) => {
                            *own = (t, now + ttl);
                            true
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "ticket renewal failed");
                            false
                        }
                    }
                } else {
                    false
                }
            };
            if renewed {
                self.announce_ticket();
            }
        }
    }
}
