//! Peer handles: how a subsystem reaches one specific node.
//!
//! A handle gets or dials the peer's connection (addresses from the
//! [`AddressBook`](super::AddressBook) discovery provides), opens streams of
//! the subsystem's family with timeouts, queues messages through the
//! bounded per-(peer, family) outbox, and watches the peer's identity and
//! ticket claims.

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use serde::Serialize;
use tokio::sync::watch;

use super::core::Core;
use super::handler::PeerInfo;
use super::outbox::SendError;
use crate::id::NodeId;
use crate::wire::{self, StreamFamily, StreamHeader};

/// How long getting a connection (dial and admission included) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a stream (waiting for the peer's stream credit) may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a peer could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// No address is known for the peer and it is not connected.
    #[error("no address known for {0}")]
    NoAddress(NodeId),
    /// Every address failed, or the wait ran out.
    #[error("{0} unreachable within {1:?}")]
    Unreachable(NodeId, Duration),
    /// Opening the stream took longer than the timeout (the peer withholds
    /// stream credit).
    #[error("opening a stream to {0} timed out")]
    OpenTimeout(NodeId),
    /// The connection failed while opening the stream.
    #[error("stream to {0}: {1}")]
    Stream(NodeId, String),
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopping,
}

/// A handle on one peer (cheap to clone; does not keep a connection open by
/// itself, see [`PeerHandle::keep_alive`]).
#[derive(Clone)]
pub struct PeerHandle {
    pub(crate) core: Arc<Core>,
    pub(crate) node: NodeId,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHandle")
            .field("node", &self.node)
            .finish()
    }
}

impl PeerHandle {
    /// The peer's node id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The peer's session now (None when not connected).
    pub fn info(&self) -> Option<PeerInfo> {
        self.core.info(&self.node)
    }

    /// A watch of the peer's session: `Some` while admitted (updated when
    /// its ticket is renewed), `None` while not.
    pub fn watch(&self) -> watch::Receiver<Option<PeerInfo>> {
        self.core.watch(self.node)
    }

    /// The peer's session, dialling it first when there is none.
    pub async fn connect(&self) -> Result<PeerInfo, PeerError> {
        if let Some(info) = self.info() {
            return Ok(info);
        }
        if self.core.is_stopping() {
            return Err(PeerError::Stopping);
        }
        let addrs = self
            .core
            .addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|book| book.addresses(&self.node))
            .unwrap_or_default();
        if addrs.is_empty() {
            return Err(PeerError::NoAddress(self.node));
        }
        let mut rx = self.watch();
        let waited = tokio::time::timeout(CONNECT_TIMEOUT, async {
            if self.core.reach(self.node, addrs).await {
                return;
            }
            // Another task may be dialling the same address: wait for it.
            while rx.borrow_and_update().is_none() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match (waited, self.info()) {
            (_, Some(info)) => Ok(info),
            _ => Err(PeerError::Unreachable(self.node, CONNECT_TIMEOUT)),
        }
    }

    async fn connection(&self) -> Result<quinn::Connection, PeerError> {
        self.connect().await?;
        super::Link::connection(&*self.core, &self.node)
            .ok_or(PeerError::Unreachable(self.node, CONNECT_TIMEOUT))
    }

    /// Open a uni stream of `family` (its header written), connecting first
    /// if needed.
    pub async fn open_uni(&self, family: StreamFamily) -> Result<SendStream, PeerError> {
        let conn = self.connection().await?;
        let node = self.node;
        let opened = tokio::time::timeout(OPEN_TIMEOUT, async move {
            let mut send = conn
                .open_uni()
                .await
                .map_err(|e| PeerError::Stream(node, e.to_string()))?;
            wire::write_header(&mut send, StreamHeader::new(family))
                .await
                .map_err(|e| PeerError::Stream(node, e.to_string()))?;
            Ok(send)
        })
        .await
        .map_err(|_| PeerError::OpenTimeout(node))?;
        super::Link::touch(&*self.core, &node);
        opened
    }

    /// Open a bi stream of `family` (its header written), connecting first
    /// if needed.
    pub async fn open_bi(
        &self,
        family: StreamFamily,
    ) -> Result<(SendStream, RecvStream), PeerError> {
        let conn = self.connection().await?;
        let node = self.node;
        let opened = tokio::time::timeout(OPEN_TIMEOUT, async move {
            let (mut send, recv) = conn
                .open_bi()
                .await
                .map_err(|e| PeerError::Stream(node, e.to_string()))?;
            wire::write_header(&mut send, StreamHeader::new(family))
                .await
                .map_err(|e| PeerError::Stream(node, e.to_string()))?;
            Ok((send, recv))
        })
        .await
        .map_err(|_| PeerError::OpenTimeout(node))?;
        super::Link::touch(&*self.core, &node);
        opened
    }

    /// Queue `msg` as one frame on `family`'s outbox for this peer, without
    /// waiting (a full queue follows the family's policy). The peer must be
    /// connected.
    pub fn send<T: Serialize + ?Sized>(
        &self,
        family: StreamFamily,
        msg: &T,
    ) -> Result<(), SendError> {
        self.core.send_to(self.node, family, msg)
    }

    /// Queue `msg`, waiting for room when the family applies backpressure.
    pub async fn send_wait<T: Serialize + ?Sized>(
        &self,
        family: StreamFamily,
        msg: &T,
    ) -> Result<(), SendError> {
        self.core.send_to_wait(self.node, family, msg).await
    }

    /// Close the peer's connection now unless a subsystem holds it open with
    /// [`PeerHandle::keep_alive`]: for a protocol that opened it for itself
    /// and no longer needs it (discovery, when a peer leaves its active
    /// view), so connections do not linger until the idle timeout.
    pub fn release(&self) {
        self.core.release(&self.node);
    }

    /// Hold the peer's current connection open while the guard lives, even
    /// when no stream is opened on it (a long-lived subscription).
    pub fn keep_alive(&self) -> KeepAlive {
        self.core.table().pin(&self.node, 1);
        KeepAlive {
            core: self.core.clone(),
            node: self.node,
        }
    }
}

/// Keeps a peer's connection from being closed as idle; see
/// [`PeerHandle::keep_alive`].
pub struct KeepAlive {
    core: Arc<Core>,
    node: NodeId,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.core.table().pin(&self.node, -1);
    }
}
