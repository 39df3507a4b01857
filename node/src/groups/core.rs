//! One group on this node, without the application's types: its Raft, its
//! batcher queue and how to answer a query. The protocol handler, the typed
//! [`Group`](super::Group) handle and membership upkeep all work through it.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::ServerState;
use tokio::sync::{mpsc, oneshot, watch};

use super::batcher::{Pending, Written};
use super::config::GroupConfig;
use super::error::GroupError;
use super::net::{call, CallError};
use super::store::GroupDb;
use super::types::{MemberId, Raft};
use super::wire::{GroupRequest, GroupResponse, Refusal};
use crate::id::GroupId;
use crate::network::Network;

/// Answers an encoded query from the local state.
pub(crate) type QueryFn = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, Refusal> + Send + Sync>;

/// How long to wait for a leader before retrying a forwarded call.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// One group on this node.
pub(crate) struct GroupCore {
    pub id: GroupId,
    pub name: String,
    pub me: MemberId,
    pub raft: Raft,
    pub config: GroupConfig,
    pub net: Network,
    pub db: GroupDb,
    pub queue: mpsc::Sender<Pending>,
    pub applied: watch::Receiver<u64>,
    pub query: QueryFn,
    /// The founding set this node promised (see `forming`), cached.
    pub promise: tokio::sync::Mutex<Option<Vec<MemberId>>>,
    /// Set when the group stops on this node.
    pub stopped: watch::Sender<bool>,
    /// Raft requests (appends, votes, snapshot chunks) this member answered.
    pub raft_requests: AtomicU64,
}

impl GroupCore {
    /// The leader as this member last heard.
    pub fn leader(&self) -> Option<MemberId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this member leads now.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.me)
    }

    fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Wait (at most `until`) for the leader to change from `seen` or for a
    /// short pause, whichever comes first.
    async fn pause_for_leader(&self, seen: Option<MemberId>, until: Instant) {
        let mut rx = self.raft.metrics();
        let wait = async {
            loop {
                if rx.changed().await.is_err() {
                    return;
                }
                let leader = rx.borrow().current_leader;
                if leader.is_some() && leader != seen {
                    return;
                }
            }
        };
        let pause = until
            .saturating_duration_since(Instant::now())
            .min(RETRY_PAUSE * 10);
        let _ = tokio::time::timeout(pause, wait).await;
        tokio::time::sleep(RETRY_PAUSE.min(until.saturating_duration_since(Instant::now()))).await;
    }

    /// Whether this member leads but has heard from no quorum for longer
    /// than two election timeouts: a leader cut off from its followers
    /// (etcd's CheckQuorum). openraft keeps such a leader leading, and
    /// whatever it proposes can only time out with an unknown outcome, so
    /// proposals are refused before anything is proposed: the caller sees
    /// "no leader" (HTTP 503) instead of an endless run of "outcome unknown".
    pub fn lost_quorum(&self) -> bool {
        let lease = (self.config.election_timeout.1 * 2).max(self.config.heartbeat * 4);
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader
            && m.millis_since_quorum_ack
                .is_some_and(|ms| u128::from(ms) > lease.as_millis())
    }

    /// Propose `cmd` through the local batcher (this member must lead).
    pub async fn propose_local(&self, cmd: Vec<u8>, until: Instant) -> Written {
        if self.lost_quorum() {
            // Nothing proposed: the caller may retry elsewhere or later.
            return Err(Refusal::NotLeader(None));
        }
        let (tx, rx) = oneshot::channel();
        let queued =
            tokio::time::timeout_at(until.into(), self.queue.send(Pending { cmd, reply: tx }))
                .await;
        match queued {
            Ok(Ok(())) => {}
            // Nothing was proposed: the caller may retry.
            Ok(Err(_)) => return Err(Refusal::NotLeader(None)),
            Err(_) => return Err(Refusal::NotLeader(self.leader())),
        }
        match tokio::time::timeout_at(until.into(), rx).await {
            Ok(Ok(written)) => written,
            Ok(Err(_)) => Err(Refusal::Failed("the batcher stopped".into())),
            Err(_) => Err(Refusal::Failed("no answer before the deadline".into())),
        }
    }

    /// Send `req` to the leader, or run `local` when this member leads,
    /// until an answer or `until`. Only what cannot have taken effect is
    /// retried (no leader, not the leader, nothing sent), unless the request
    /// is `idempotent` (a read), which retries any failure; a write that
    /// may have reached a leader ends `Indeterminate`.
    async fn route<T, F: std::future::Future<Output = Result<T, Refusal>>>(
        &self,
        until: Instant,
        req: GroupRequest,
        idempotent: bool,
        local: impl Fn() -> F,
        unpack: impl Fn(GroupResponse) -> Result<T, GroupResponse>,
    ) -> Result<T, GroupError> {
        loop {
            if self.stopping() {
                return Err(GroupError::Stopped);
            }
            if Instant::now() >= until {
                return Err(GroupError::NoLeader(self.config.write_timeout));
            }
            let leader = self.leader();
            let got = match leader {
                None => {
                    self.pause_for_leader(None, until).await;
                    continue;
                }
                // Cut off from every quorum: no election can succeed either,
                // so say so now rather than at the deadline.
                Some(l) if l == self.me && self.lost_quorum() => {
                    return Err(GroupError::NoLeader(self.config.write_timeout))
                }
                Some(l) if l == self.me => local().await,
                Some(l) => {
                    let left = until.saturating_duration_since(Instant::now());
                    match call(&self.net, l, &req, self.config.max_frame, left).await {
                        Ok(GroupResponse::Refused(r)) => Err(r),
                        Ok(resp) => unpack(resp).map_err(|other| {
                            Refusal::Failed(format!("unexpected answer {other:?}"))
                        }),
                        Err(CallError::NotSent(..)) => Err(Refusal::NotLeader(None)),
                        Err(e) if idempotent => Err(Refusal::Failed(e.to_string())),
                        Err(e) => return Err(GroupError::Indeterminate(e.to_string())),
                    }
                }
            };
            match got {
                Ok(v) => return Ok(v),
                Err(Refusal::NotLeader(_)) => self.pause_for_leader(leader, until).await,
                Err(Refusal::Failed(_)) if idempotent => self.pause_for_leader(leader, until).await,
                Err(Refusal::Failed(why)) => return Err(GroupError::Indeterminate(why)),
                Err(Refusal::Undecodable(why)) => return Err(GroupError::Rejected(why)),
            }
        }
    }

    /// Write `cmd` through the leader, wherever it is. Returns the entry's
    /// index and the command's encoded output.
    pub async fn write(&self, cmd: Vec<u8>) -> Result<(u64, Vec<u8>), GroupError> {
        if cmd.len() > self.config.max_batch_bytes {
            return Err(GroupError::Rejected(format!(
                "command of {} bytes exceeds max_batch_bytes ({})",
                cmd.len(),
                self.config.max_batch_bytes
            )));
        }
        let until = Instant::now() + self.config.write_timeout;
        let req = GroupRequest::Forward(self.id, cmd.clone());
        let (index, out) = self
            .route(
                until,
                req,
                false,
                || self.propose_local(cmd.clone(), until),
                |resp| match resp {
                    GroupResponse::Written(index, out) => Ok((index, out)),
                    other => Err(other),
                },
            )
            .await?;
        out.map(|out| (index, out)).map_err(GroupError::Rejected)
    }

    /// The leader's read index, confirmed by a quorum (this member must lead).
    pub async fn read_index_local(&self) -> Result<u64, Refusal> {
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Refusal::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(Refusal::Failed(q.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(Refusal::Failed(f.to_string())),
        }
    }

    /// A linearizable read point: the leader's read index, then wait until
    /// this member has applied it.
    pub async fn linearizable_point(&self) -> Result<u64, GroupError> {
        let until = Instant::now() + self.config.write_timeout;
        let index = self
            .route(
                until,
                GroupRequest::ReadIndex(self.id),
                true,
                || self.read_index_local(),
                |resp| match resp {
                    GroupResponse::ReadIndex(i) => Ok(i),
                    other => Err(other),
                },
            )
            .await?;
        self.wait_applied(index, until).await?;
        Ok(index)
    }

    /// Wait until this member has applied `index`.
    pub async fn wait_applied(&self, index: u64, until: Instant) -> Result<(), GroupError> {
        let mut rx = self.applied.clone();
        let reached = tokio::time::timeout_at(until.into(), rx.wait_for(|&a| a >= index)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(GroupError::Stopped),
            Err(_) => Err(GroupError::Lagging {
                index,
                applied: *self.applied.borrow(),
            }),
        }
    }

    /// Answer `query` from the leader's state, without a quorum round.
    pub async fn query_at_leader(&self, query: Vec<u8>) -> Result<Vec<u8>, GroupError> {
        let until = Instant::now() + self.config.write_timeout;
        let req = GroupRequest::Query(self.id, query.clone());
        self.route(
            until,
            req,
            true,
            || std::future::ready((self.query)(&query)),
            |resp| match resp {
                GroupResponse::Answer(a) => Ok(a),
                other => Err(other),
            },
        )
        .await
    }
}
