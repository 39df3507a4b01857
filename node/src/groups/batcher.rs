//! The proposal batcher in front of `client_write`.
//!
//! openraft 0.9 handles one client write per log entry and waits for each
//! append's flush, so one command per entry caps a group at the disk's fsync
//! rate. The batcher keeps at most `max_in_flight` entries proposed and not
//! yet answered; while they are in flight, commands queue, and the next entry
//! carries everything queued (up to `max_batch` commands or `max_batch_bytes`).
//! Each caller gets its own command's output and the entry's log index.

use std::sync::Arc;
use std::time::Instant;

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::types::{MemberId, Proposal, Raft};
use super::wire::Refusal;

/// A command's result: the log index and the encoded output.
pub(crate) type Written = Result<(u64, Result<Vec<u8>, String>), Refusal>;

/// One queued command.
pub(crate) struct Pending {
    pub cmd: Vec<u8>,
    pub reply: oneshot::Sender<Written>,
}

/// How the batcher groups commands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub max_batch: usize,
    pub max_batch_bytes: usize,
    pub max_in_flight: usize,
}

/// Run until the queue closes or Raft stops.
pub(crate) async fn run(
    raft: Raft,
    group: String,
    mut rx: mpsc::Receiver<Pending>,
    limits: BatchLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut bytes = first.cmd.len();
        let mut batch = vec![first];
        while batch.len() < limits.max_batch && bytes < limits.max_batch_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.cmd.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        metrics::histogram!("tessella_group_batch_commands", "group" => group.clone())
            .record(commands.len() as f64);
        let started = Instant::now();
        let proposed = raft.client_write_ff(Proposal { commands }).await;
        let rx_resp = match proposed {
            Ok(rx) => rx,
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(Refusal::Failed(e.to_string())));
                }
                return;
            }
        };
        let group = group.clone();
        tokio::spawn(async move {
            let answer = rx_resp.await;
            drop(slot);
            metrics::histogram!("tessella_group_commit_seconds", "group" => group)
                .record(started.elapsed().as_secs_f64());
            match answer {
                Ok(Ok(resp)) => {
                    let index = resp.log_id.index;
                    let mut outputs = resp.data.outputs.into_iter();
                    for r in replies {
                        let out = outputs
                            .next()
                            .unwrap_or_else(|| Err("no output for the command".into()));
                        let _ = r.send(Ok((index, out)));
                    }
                }
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    // Refused before it was proposed: safe for callers to retry.
                    let leader: Option<MemberId> = f.leader_id;
                    for r in replies {
                        let _ = r.send(Err(Refusal::NotLeader(leader)));
                    }
                }
                Ok(Err(e)) => {
                    for r in replies {
                        let _ = r.send(Err(Refusal::Failed(e.to_string())));
                    }
                }
                Err(_) => {
                    // The responder was dropped: leadership was lost after
                    // the entry was appended. It may still commit.
                    for r in replies {
                        let _ = r.send(Err(Refusal::Failed(
                            "leadership lost with the entry in flight".into(),
                        )));
                    }
                }
            }
        });
    }
}
