//! Bounded outgoing queues, one per (peer, family), each drained by one
//! writer task.
//!
//! Every message a subsystem sends to a peer goes through here, so what a
//! peer can make this node hold is bounded by `capacity` frames per family,
//! and the number of writer tasks by peers × families. The writer keeps one
//! uni stream per queue open and writes frames on it in order; opening the
//! stream and writing each frame time out, so a peer that withholds stream
//! credit or flow control costs a stalled writer, never a pile of tasks. What
//! a full queue does is the family's [`FullPolicy`]: gossip drops the
//! oldest message (gossip repairs loss), streams and Raft wait for room.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use quinn::Connection;
use tokio::sync::Notify;

use crate::id::NodeId;
use crate::wire::{self, StreamFamily, StreamHeader};

/// What happens when a message meets a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Evict the oldest queued message and count it (gossip: newer state
    /// supersedes older).
    DropOldest,
    /// Refuse the new message ([`SendError::Full`]) from `try_send`, wait for
    /// room in `send` (streams, Raft).
    Backpressure,
}

/// How a family's per-peer queue is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPolicy {
    /// Most frames queued per peer.
    pub capacity: usize,
    /// What a full queue does.
    pub full: FullPolicy,
    /// How long opening the stream may take before the frame is dropped.
    pub open_timeout: Duration,
    /// How long writing one frame may take before the stream is reset and
    /// the frame dropped.
    pub write_timeout: Duration,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        OutboxPolicy {
            capacity: 64,
            full: FullPolicy::Backpressure,
            open_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a message was not queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No admitted session with the peer.
    #[error("peer not connected")]
    NotConnected,
    /// The queue is full and the family applies backpressure.
    #[error("the peer's {0} queue is full")]
    Full(StreamFamily),
    /// The session ended while waiting for room.
    #[error("the session ended")]
    Closed,
    /// The message does not fit a frame.
    #[error("encoding: {0}")]
    Encode(#[from] wire::FrameError),
}

/// What the writers need from the transport.
pub(crate) trait Link: Send + Sync + 'static {
    /// The connection carrying `peer`, if any.
    fn connection(&self, peer: &NodeId) -> Option<Connection>;
    /// Traffic to `peer`: not idle.
    fn touch(&self, peer: &NodeId);
}

#[derive(Default)]
struct State {
    frames: VecDeque<Vec<u8>>,
    closed: bool,
}

/// One (peer, family) queue.
struct Queue {
    state: Mutex<State>,
    /// Wakes the writer.
    ready: Notify,
    /// Wakes senders waiting for room.
    room: Notify,
    policy: OutboxPolicy,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `frame` now or say why not. `Ok(true)` when an older frame was
    /// evicted.
    fn try_push(&self, family: StreamFamily, frame: Vec<u8>) -> Result<bool, (SendError, Vec<u8>)> {
        let mut s = self.lock();
        if s.closed {
            return Err((SendError::Closed, frame));
        }
        let mut evicted = false;
        if s.frames.len() >= self.policy.capacity.max(1) {
            match self.policy.full {
                FullPolicy::DropOldest => {
                    s.frames.pop_front();
                    evicted = true;
                }
                FullPolicy::Backpressure => return Err((SendError::Full(family), frame)),
            }
        }
        s.frames.push_back(frame);
        drop(s);
        self.ready.notify_one();
        Ok(evicted)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.room.notify_waiters();
    }
}

/// The queues of every (peer, family) with a writer.
#[derive(Default)]
pub(crate) struct Outboxes {
    queues: Mutex<HashMap<(NodeId, StreamFamily), Arc<Queue>>>,
}

impl Outboxes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(NodeId, StreamFamily), Arc<Queue>>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(
        &self,
        link: &Arc<dyn Link>,
        peer: NodeId,
        family: StreamFamily,
        policy: OutboxPolicy,
    ) -> Result<Arc<Queue>, SendError> {
        if link.connection(&peer).is_none() {
            return Err(SendError::NotConnected);
        }
        let mut queues = self.lock();
        if let Some(q) = queues.get(&(peer, family)) {
            return Ok(q.clone());
        }
        let q = Arc::new(Queue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            room: Notify::new(),
            policy,
        });
        queues.insert((peer, family), q.clone());
        tokio::spawn(writer(Arc::downgrade(link), peer, family, q.clone()));
        Ok(q)
    }

    /// Queue `frame` (a whole encoded frame) for `peer` without waiting.
    pub(crate) fn try_send(
        &self,
        link: &Arc<dyn Link>,
        peer: NodeId,
        family: StreamFamily,
        policy: OutboxPolicy,
        frame: Vec<u8>,
    ) -> Result<(), SendError> {
        let q = self.queue(link, peer, family, policy)?;
        match q.try_push(family, frame) {
            Ok(evicted) => {
                if evicted {
                    dropped(family);
                }
                Ok(())
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Queue `frame` for `peer`, waiting for room under backpressure.
    pub(crate) async fn send(
        &self,
        link: &Arc<dyn Link>,
        peer: NodeId,
        family: StreamFamily,
        policy: OutboxPolicy,
        mut frame: Vec<u8>,
    ) -> Result<(), SendError> {
        let q = self.queue(link, peer, family, policy)?;
        loop {
            let room = q.room.notified();
            match q.try_push(family, frame) {
                Ok(evicted) => {
                    if evicted {
                        dropped(family);
                    }
                    return Ok(());
                }
                Err((SendError::Full(_), f)) => frame = f,
                Err((e, _)) => return Err(e),
            }
            room.await;
        }
    }

    /// The peer's session ended: drop its queues and stop their writers.
    pub(crate) fn peer_down(&self, peer: &NodeId) {
        let gone: Vec<Arc<Queue>> = {
            let mut queues = self.lock();
            let keys: Vec<_> = queues.keys().filter(|(p, _)| p == peer).copied().collect();
            keys.into_iter().filter_map(|k| queues.remove(&k)).collect()
        };
        for q in gone {
            q.close();
        }
    }

    /// Stop every writer.
    pub(crate) fn close_all(&self) {
        let gone: Vec<Arc<Queue>> = self.lock().drain().map(|(_, q)| q).collect();
        for q in gone {
            q.close();
        }
    }

    /// Number of live queues (one writer task each).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

fn dropped(family: StreamFamily) {
    metrics::counter!("tessella_outbox_dropped_total", "family" => family.name()).increment(1);
}

/// Drains one queue onto one uni stream, reopening it after a failure.
async fn writer(link: Weak<dyn Link>, peer: NodeId, family: StreamFamily, q: Arc<Queue>) {
    let mut stream: Option<quinn::SendStream> = None;
    loop {
        let ready = q.ready.notified();
        let next = {
            let mut s = q.lock();
            if s.closed {
                break;
            }
            s.frames.pop_front()
        };
        let Some(frame) = next else {
            ready.await;
            continue;
        };
        q.room.notify_one();
        let Some(link) = link.upgrade() else { break };
        let Some(conn) = link.connection(&peer) else {
            break;
        };
        if stream.is_none() {
            let opened = tokio::time::timeout(q.policy.open_timeout, async {
                let mut send = conn.open_uni().await.ok()?;
                wire::write_header(&mut send, StreamHeader::new(family))
                    .await
                    .ok()?;
                Some(send)
            })
            .await;
            match opened {
                Ok(Some(s)) => stream = Some(s),
                _ => {
                    tracing::debug!(peer = %peer, %family, "could not open a stream; frame dropped");
                    dropped(family);
                    continue;
                }
            }
        }
        let Some(send) = stream.as_mut() else {
            continue;
        };
        let written = tokio::time::timeout(q.policy.write_timeout, send.write_all(&frame)).await;
        if matches!(written, Ok(Ok(()))) {
            link.touch(&peer);
        } else {
            tracing::debug!(peer = %peer, %family, "frame write failed or timed out; stream reset");
            dropped(family);
            if let Some(mut s) = stream.take() {
                let _ = s.reset(crate::wire::CloseCode::Internal.into());
            }
        }
    }
    q.close();
    if let Some(mut s) = stream {
        let _ = s.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize, full: FullPolicy) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            room: Notify::new(),
            policy: OutboxPolicy {
                capacity,
                full,
                ..OutboxPolicy::default()
            },
        }
    }

    #[test]
    fn drop_oldest_keeps_the_newest_frames() {
        let q = queue(2, FullPolicy::DropOldest);
        let f = StreamFamily::Discovery;
        assert!(!q.try_push(f, vec![1]).expect("push"));
        assert!(!q.try_push(f, vec![2]).expect("push"));
        assert!(q.try_push(f, vec![3]).expect("push"), "evicts");
        let frames: Vec<_> = q.lock().frames.iter().cloned().collect();
        assert_eq!(frames, vec![vec![2], vec![3]]);
    }

    #[test]
    fn backpressure_refuses_when_full_and_closed_refuses_all() {
        let q = queue(1, FullPolicy::Backpressure);
        let f = StreamFamily::Groups;
        assert!(q.try_push(f, vec![1]).is_ok());
        assert!(matches!(
            q.try_push(f, vec![2]),
            Err((SendError::Full(StreamFamily::Groups), _))
        ));
        q.close();
        assert!(matches!(
            q.try_push(f, vec![3]),
            Err((SendError::Closed, _))
        ));
    }
}
