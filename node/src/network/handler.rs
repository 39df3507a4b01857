//! Protocol handlers: how a subsystem plugs into the transport.
//!
//! A subsystem (discovery, streams, groups, collections, functions)
//! implements [`ProtocolHandler`] for one [`StreamFamily`] and registers it
//! with [`Network::register`](super::Network::register). The transport then
//! tells it when admitted peers come and go (with their verified identity and
//! ticket claims) and hands it every incoming stream whose header names its
//! family at a version it speaks. Streams of a family nobody registered are
//! refused with [`CloseCode::UnknownFamily`], versions outside
//! [`ProtocolHandler::versions`] with [`CloseCode::UnsupportedVersion`].
//!
//! To reach a peer, a handler keeps the [`Network`](super::Network) it was
//! registered with and asks it for a [`PeerHandle`](super::PeerHandle).
//!
//! Contract: the `peer_*` callbacks run on the transport's own path and must
//! return at once (update state, spawn work); the stream futures run in their
//! own task each, at most as many per peer as QUIC lets the peer open
//! (`max_concurrent_uni_streams` / `max_concurrent_bidi_streams`).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use quinn::{RecvStream, SendStream};
use tessella_attestation::ratls::PeerIdentity;
use tessella_attestation::TicketClaims;

use super::outbox::OutboxPolicy;
use crate::id::NodeId;
use crate::wire::{CloseCode, StreamFamily};

/// What a handler's stream futures are.
pub type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An admitted peer as handlers see it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The verified RA-TLS identity (node id, measurements, matched policy entry).
    pub identity: Arc<PeerIdentity>,
    /// The claims of the ticket in force (updated when the peer renews it).
    pub claims: TicketClaims,
    /// The remote address of the connection.
    pub addr: SocketAddr,
}

impl PeerInfo {
    /// The peer's node id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id
    }
}

/// An incoming unidirectional stream; its header has been read.
#[derive(Debug)]
pub struct IncomingUni {
    /// The family version the opener wrote (within the handler's range).
    pub version: u8,
    /// The stream, positioned after the header.
    pub recv: RecvStream,
}

/// An incoming bidirectional stream; the opener's header has been read.
#[derive(Debug)]
pub struct IncomingBi {
    /// The family version the opener wrote (within the handler's range).
    pub version: u8,
    /// The answering half (write your own header first if the protocol wants one).
    pub send: SendStream,
    /// The stream, positioned after the header.
    pub recv: RecvStream,
}

/// A subsystem's protocol, plugged into the transport.
pub trait ProtocolHandler: Send + Sync + 'static {
    /// The stream family this handler serves (one handler per family).
    fn family(&self) -> StreamFamily;

    /// The family versions this handler speaks.
    fn versions(&self) -> RangeInclusive<u8> {
        1..=1
    }

    /// How messages queued for a peer with
    /// [`PeerHandle::send`](super::PeerHandle::send) are bounded, and what a
    /// full queue does.
    fn outbox(&self) -> OutboxPolicy {
        OutboxPolicy::default()
    }

    /// A peer was admitted (it had no session before).
    fn peer_up(&self, _peer: &PeerInfo) {}

    /// A peer's ticket claims changed (it presented a renewed ticket).
    fn peer_updated(&self, _peer: &PeerInfo) {}

    /// A peer's session ended (closed, expired, revoked, idle or departed).
    fn peer_down(&self, _peer: NodeId) {}

    /// An incoming uni stream of this family. The default refuses it.
    fn uni(self: Arc<Self>, _peer: PeerInfo, mut stream: IncomingUni) -> HandlerFuture {
        let _ = stream.recv.stop(CloseCode::UnknownFamily.into());
        Box::pin(async {})
    }

    /// An incoming bi stream of this family. The default refuses it.
    fn bi(self: Arc<Self>, _peer: PeerInfo, mut stream: IncomingBi) -> HandlerFuture {
        let _ = stream.recv.stop(CloseCode::UnknownFamily.into());
        let _ = stream.send.reset(CloseCode::UnknownFamily.into());
        Box::pin(async {})
    }

    /// The node is stopping: last words to peers (bounded by the transport's
    /// shutdown grace period) before every connection closes.
    fn shutdown(self: Arc<Self>) -> HandlerFuture {
        Box::pin(async {})
    }
}

/// Why a handler could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another handler serves that family already.
    #[error("a handler for the {0} family is registered already")]
    Taken(StreamFamily),
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopping,
}

/// Handlers by family.
#[derive(Default)]
pub(crate) struct Handlers {
    by_family: RwLock<HashMap<StreamFamily, Arc<dyn ProtocolHandler>>>,
}

impl Handlers {
    pub(crate) fn insert(&self, h: Arc<dyn ProtocolHandler>) -> Result<(), RegisterError> {
        let mut map = self.by_family.write().unwrap_or_else(|p| p.into_inner());
        let family = h.family();
        if map.contains_key(&family) {
            return Err(RegisterError::Taken(family));
        }
        map.insert(family, h);
        Ok(())
    }

    pub(crate) fn get(&self, family: StreamFamily) -> Option<Arc<dyn ProtocolHandler>> {
        self.by_family
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&family)
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<dyn ProtocolHandler>> {
        let map = self.by_family.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.iter().map(|(f, h)| (*f, h.clone())).collect();
        v.sort_by_key(|(f, _)| *f);
        v.into_iter().map(|(_, h)| h).collect()
    }

    /// Drop every handler (they hold the network: this breaks the cycle).
    pub(crate) fn clear(&self) -> Vec<Arc<dyn ProtocolHandler>> {
        let mut map = self.by_family.write().unwrap_or_else(|p| p.into_inner());
        map.drain().map(|(_, h)| h).collect()
    }
}
