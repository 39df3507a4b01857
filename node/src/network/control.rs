//! The control protocol: admission (the Hello exchange on the first bi
//! stream), and after admission, control-family uni streams carrying relayed
//! collateral and renewed tickets (see [`crate::admission`] and
//! [`crate::relay`] for the messages and the decisions).
//!
//! Control is a protocol handler like any other once a peer is admitted; only
//! the admission exchange itself runs before there is a peer to hand it to.

use std::sync::{Arc, Weak};

use quinn::{Connection, RecvStream, SendStream};
use tessella_attestation::{Collateral, Fmspc, Quote, VerifyError};

use super::core::Core;
use super::handler::{HandlerFuture, IncomingUni, PeerInfo, ProtocolHandler};
use super::outbox::{FullPolicy, OutboxPolicy};
use crate::admission::{ControlMsg, Hello, Refused};
use crate::id::NodeId;
use crate::relay::{CollateralMsg, CollateralV1};
use crate::wire::{self, read_frame, write_frame, CloseCode, FrameError, StreamFamily};

/// The dialer's side of admission: open the control stream, send our Hello,
/// read theirs.
pub(crate) async fn dial_hello(
    conn: &Connection,
    hello: &ControlMsg,
    max_frame: usize,
) -> Result<Hello, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    wire::write_header(&mut send, wire::StreamHeader::new(StreamFamily::Control))
        .await
        .map_err(|e| e.to_string())?;
    write_frame(&mut send, hello, max_frame)
        .await
        .map_err(|e| e.to_string())?;
    let reply: Option<ControlMsg> = read_frame(&mut recv, max_frame)
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    match reply {
        Some(ControlMsg::V1(hello)) => Ok(hello),
        None => Err("peer closed the control stream".to_string()),
    }
}

/// The listener's side of admission: the first bi stream must be the
/// control stream carrying the dialer's Hello.
pub(crate) async fn accept_hello(
    conn: &Connection,
    max_frame: usize,
) -> Result<(SendStream, Hello), Refused> {
    // The close reason says what was wrong (our words about their bytes);
    // the metrics label is a fixed phrase.
    let violation = |label: &'static str, reason: String| Refused {
        code: CloseCode::ProtocolViolation,
        reason,
        label,
    };
    let (send, mut recv): (SendStream, RecvStream) = conn
        .accept_bi()
        .await
        .map_err(|e| violation("no control stream", e.to_string()))?;
    let header = wire::read_header(&mut recv)
        .await
        .map_err(|e| violation("bad control stream header", e.to_string()))?;
    if header.family != StreamFamily::Control {
        return Err(Refused::new(
            CloseCode::ProtocolViolation,
            "first stream is not the control stream",
        ));
    }
    let hello: Option<ControlMsg> =
        read_frame(&mut recv, max_frame)
            .await
            .map_err(|e| match e {
                FrameError::TooLarge { .. } => Refused {
                    code: CloseCode::FrameTooLarge,
                    reason: e.to_string(),
                    label: "frame too large",
                },
                e => violation("malformed Hello", e.to_string()),
            })?;
    match hello {
        Some(ControlMsg::V1(hello)) => Ok((send, hello)),
        None => Err(Refused::new(
            CloseCode::ProtocolViolation,
            "empty control stream",
        )),
    }
}

/// Control-family streams after admission: relayed collateral and renewed
/// tickets.
pub(crate) struct ControlHandler {
    pub(crate) core: Weak<Core>,
}

impl ProtocolHandler for ControlHandler {
    fn family(&self) -> StreamFamily {
        StreamFamily::Control
    }

    fn outbox(&self) -> OutboxPolicy {
        // Bundles (up to ~25 KB each, one per platform model) and tickets:
        // few and small. A full queue refuses, and the sender logs it.
        OutboxPolicy {
            capacity: 32,
            full: FullPolicy::Backpressure,
            ..OutboxPolicy::default()
        }
    }

    fn peer_up(&self, peer: &PeerInfo) {
        if let Some(core) = self.core.upgrade() {
            core.push_collateral(peer.node_id());
        }
    }

    fn uni(self: Arc<Self>, peer: PeerInfo, stream: IncomingUni) -> HandlerFuture {
        let core = self.core.clone();
        Box::pin(async move {
            if let Some(core) = core.upgrade() {
                core.serve_relay(peer.node_id(), stream.recv).await;
            }
        })
    }
}

impl Core {
    /// Receive relayed collateral bundles and renewed tickets from a peer.
    async fn serve_relay(self: Arc<Self>, peer: NodeId, mut recv: RecvStream) {
        loop {
            match read_frame::<_, CollateralMsg>(&mut recv, self.limits.max_frame).await {
                Ok(Some(CollateralMsg::V1(CollateralV1::Bundle { json }))) => {
                    match Collateral::from_json(&json) {
                        Ok(c) => {
                            // dcap-qvl takes milliseconds: off the async workers.
                            let me = self.clone();
                            let _ = self.blocking(move || me.offer_collateral(c)).await;
                        }
                        Err(e) => {
                            tracing::warn!(peer = %peer, error = %e, "relayed collateral refused")
                        }
                    }
                }
                Ok(Some(CollateralMsg::V1(CollateralV1::Ticket { token }))) => {
                    self.renew_peer_ticket(peer, &token);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "malformed control frame");
                    let code = e.close_code();
                    let _ = recv.stop(code.into());
                    if matches!(e, FrameError::TooLarge { .. }) {
                        self.close_peer(&peer, code, "frame too large");
                    }
                    return;
                }
            }
        }
    }

    /// Queue every bundle we hold for a newly admitted peer.
    fn push_collateral(self: &Arc<Self>, peer: NodeId) {
        for b in self.verifier.store().all() {
            let msg = CollateralMsg::V1(CollateralV1::Bundle { json: b.to_json() });
            if let Err(e) = self.send_to(peer, StreamFamily::Control, &msg) {
                tracing::debug!(peer = %peer, fmspc = %b.fmspc(), error = %e, "bundle not relayed");
            }
        }
    }

    /// Present this node's (new) ticket to every connected peer.
    pub(crate) fn announce_ticket(self: &Arc<Self>) {
        let token = self.own_ticket().0;
        let msg = CollateralMsg::V1(CollateralV1::Ticket { token });
        for peer in self.connected_ids() {
            if let Err(e) = self.send_to(peer, StreamFamily::Control, &msg) {
                tracing::debug!(peer = %peer, error = %e, "ticket announcement not queued");
            }
        }
    }

    /// A peer presented a renewed ticket: validate it like at admission and
    /// let it carry the session from now on.
    fn renew_peer_ticket(self: &Arc<Self>, peer: NodeId, token: &str) {
        let now = self.now();
        let claims = match self.validator.validate(token, Some(&peer.to_string()), now) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = %peer, code = e.code(), "renewed ticket refused; the old one stays in force");
                return;
            }
        };
        if self.revocations().covers(&claims) {
            tracing::warn!(peer = %peer, "renewed ticket is revoked");
            return;
        }
        tracing::debug!(peer = %peer, expires = claims.exp, "peer ticket renewed");
        let action = self.table().renewed(&peer, claims);
        self.apply(action.into_iter().collect());
    }

    /// The quote in this node's own certificate.
    pub(crate) fn own_quote(&self) -> Option<Quote> {
        let cert = self.resolver.current();
        tessella_attestation::ratls::ParsedCert::parse(cert.cert_der().as_ref())
            .ok()
            .and_then(|p| Quote::decode(&p.quote).ok())
    }

    /// Verify `c` against a real quote of its platform (ours, or one a peer
    /// was refused with for lack of it) and store it. Blocking (dcap-qvl).
    pub(crate) fn verify_and_store(&self, c: Collateral) -> Result<bool, VerifyError> {
        let fmspc = c.fmspc();
        let quote = self
            .own_quote()
            .filter(|q| q.fmspc().ok() == Some(fmspc))
            .or_else(|| {
                self.verifier
                    .wanted_collateral()
                    .into_iter()
                    .find(|(f, _)| *f == fmspc)
                    .map(|(_, q)| q)
            })
            .ok_or(VerifyError::NoCollateral { fmspc })?;
        self.verifier
            .quote_verifier()
            .verify_quote(&quote, &c, self.now())?;
        let stored = self.verifier.store().insert(c);
        self.verifier.collateral_found(&fmspc);
        tracing::info!(fmspc = %fmspc, stored, "collateral verified and stored");
        Ok(stored)
    }

    /// A relayed bundle: store it if verifiable now, else keep it pending.
    /// Blocking (dcap-qvl).
    fn offer_collateral(&self, c: Collateral) {
        let fmspc = c.fmspc();
        if let Some(held) = self.verifier.store().get(&fmspc) {
            if held.eval_data_number() >= c.eval_data_number()
                && held.validity().not_after >= c.validity().not_after
            {
                return;
            }
        }
        match self.verify_and_store(c.clone()) {
            Ok(_) => {}
            Err(VerifyError::NoCollateral { .. }) => {
                self.pending().offer(c);
            }
            Err(e) => {
                tracing::warn!(fmspc = %fmspc, error = %e, "relayed collateral does not verify")
            }
        }
    }

    /// Pending bundles whose platform now has a quote to check them with.
    /// Blocking (dcap-qvl).
    pub(crate) fn retry_pending(&self) {
        let wanted: Vec<Fmspc> = self
            .verifier
            .wanted_collateral()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        for fmspc in wanted {
            let c = self.pending().take(&fmspc);
            if let Some(c) = c {
                if let Err(e) = self.verify_and_store(c) {
                    tracing::warn!(fmspc = %fmspc, error = %e, "relayed collateral does not verify");
                }
            }
        }
    }
}
