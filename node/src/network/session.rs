//! One admitted connection's task: accept the streams the peer opens, read
//! each one's header, and hand it to the handler of its family; when the
//! connection ends, tell the peer table.

use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};

use super::core::Core;
use super::handler::{IncomingBi, IncomingUni, ProtocolHandler};
use super::Link as _;
use crate::id::NodeId;
use crate::wire::{self, CloseCode, StreamHeader, WireError};

/// How long a peer may take to send a stream's 4-byte header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(core: Arc<Core>, conn: Connection, peer: NodeId) {
    let mut shutdown = core.shutdown.clone();
    loop {
        tokio::select! {
            uni = conn.accept_uni() => match uni {
                Ok(recv) => {
                    core.touch(&peer);
                    tokio::spawn(uni_stream(core.clone(), peer, recv));
                }
                Err(_) => break,
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    core.touch(&peer);
                    tokio::spawn(bi_stream(core.clone(), peer, send, recv));
                }
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!(peer = %peer, reason = ?conn.close_reason(), "peer connection ended");
    core.session_ended(peer, &conn);
}

/// The header, and the handler that serves it at that version.
async fn route(
    core: &Core,
    peer: &NodeId,
    recv: &mut RecvStream,
) -> Result<(Arc<dyn ProtocolHandler>, u8), CloseCode> {
    let header = match tokio::time::timeout(HEADER_TIMEOUT, wire::read_header(recv)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::warn!(peer = %peer, error = %e, "bad stream header");
            return Err(e.close_code());
        }
        Err(_) => {
            tracing::warn!(peer = %peer, "stream header timed out");
            return Err(CloseCode::ProtocolViolation);
        }
    };
    let Some(handler) = core.handlers.get(header.family) else {
        tracing::warn!(peer = %peer, family = %header.family, "stream family not served");
        return Err(CloseCode::UnknownFamily);
    };
    check(&header, handler.as_ref()).map_err(|e| {
        tracing::warn!(peer = %peer, error = %e, "stream version not spoken");
        e.close_code()
    })?;
    Ok((handler, header.version))
}

fn check(header: &StreamHeader, handler: &dyn ProtocolHandler) -> Result<(), WireError> {
    header.check_version(handler.versions())
}

async fn uni_stream(core: Arc<Core>, peer: NodeId, mut recv: RecvStream) {
    match route(&core, &peer, &mut recv).await {
        Ok((handler, version)) => {
            let Some(info) = core.info(&peer) else { return };
            handler.uni(info, IncomingUni { version, recv }).await;
        }
        Err(code) => {
            let _ = recv.stop(code.into());
        }
    }
}

async fn bi_stream(core: Arc<Core>, peer: NodeId, mut send: SendStream, mut recv: RecvStream) {
    match route(&core, &peer, &mut recv).await {
        Ok((handler, version)) => {
            let Some(info) = core.info(&peer) else { return };
            handler
                .bi(
                    info,
                    IncomingBi {
                        version,
                        send,
                        recv,
                    },
                )
                .await;
        }
        Err(code) => {
            let _ = send.reset(code.into());
            let _ = recv.stop(code.into());
        }
    }
}
