//! How a node takes part in one group: its role, the group's size, Raft's
//! timing, the batcher's bounds and membership upkeep.

use std::time::Duration;

use tessella_attestation::{Permission, ResourceKind, TicketClaims};

use crate::discovery::GroupRole;
use crate::id::NodeId;

use super::wire::DEFAULT_MAX_FRAME;

/// One group's settings on this node. Every member should use the same
/// `voters`, timing and `members`; the role is per node.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// How many voters the group keeps (3 or 5 are usual). The leader
    /// promotes caught-up learners with the voter role up to this many.
    pub voters: usize,
    /// Whether this node wants to vote or only to replicate.
    pub role: GroupRole,
    /// An explicit founding membership. Empty: the group founds itself from
    /// the `voters` lowest ids advertising it (see `groups::forming`).
    pub members: Vec<NodeId>,
    /// The leader's heartbeat period.
    pub heartbeat: Duration,
    /// How often the leader sends a heartbeat that tells a learner nothing
    /// new. Learners never stand for election; entries and commit index
    /// changes still reach them at once.
    pub learner_heartbeat: Duration,
    /// A follower that hears no leader for a random time in this range
    /// starts an election.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging
    /// member catches up from the log instead of a snapshot.
    pub keep_logs: u64,
    /// A voter the leader cannot reach for this long is replaced by a
    /// caught-up learner with the voter role, when there is one.
    pub replace_after: Duration,
    /// Most commands in one log entry.
    pub max_batch: usize,
    /// Most command bytes in one log entry (and so the largest command).
    /// Smaller entries let an append carry more of them: an append holds
    /// at most `max_frame / 2 / max_batch_bytes` entries.
    pub max_batch_bytes: usize,
    /// Most entries proposed and not yet applied at the leader. Fewer means
    /// bigger batches: 1 or 2 measured best (`cargo bench --bench groups`).
    pub max_in_flight: usize,
    /// Most commands waiting for the batcher; writers wait when it is full.
    pub queue: usize,
    /// How long a write may take, retries included, before it fails.
    pub write_timeout: Duration,
    /// The largest groups frame sent or accepted.
    pub max_frame: usize,
    /// The largest snapshot accepted from a leader: chunks beyond it are
    /// refused, so no member can make this one buffer without bound.
    pub max_snapshot_bytes: u64,
    /// How often membership upkeep (founding, learners, promotion,
    /// replacement, fencing) runs.
    pub upkeep_every: Duration,
    /// Which ticket grants members, learners and writers need.
    pub access: Access,
}

/// Which ticket grants a peer needs in a group. Plain groups ask for `join`
/// (members) and `write` (proposers) on the group's name; a collection's
/// group asks for `write` (voters, proposers) and `read` (learners, reads)
/// on the collection's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The kind of resource the grants name.
    pub kind: ResourceKind,
    /// The resource the grants name; `None`: the group's own name.
    pub resource: Option<String>,
    /// Needed to vote, and to send Raft traffic (appends, votes, snapshots,
    /// founding).
    pub voter: Permission,
    /// Needed to replicate as a learner, and for reads served by the leader.
    pub learner: Permission,
    /// Needed to propose writes.
    pub write: Permission,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            kind: ResourceKind::Group,
            resource: None,
            voter: Permission::Join,
            learner: Permission::Join,
            write: Permission::Write,
        }
    }
}

impl Access {
    /// The grants of a collection called `name`.
    pub fn collection(name: &str) -> Access {
        Access {
            kind: ResourceKind::Collection,
            resource: Some(name.to_string()),
            voter: Permission::Write,
            learner: Permission::Read,
            write: Permission::Write,
        }
    }

    /// Whether `claims` grant `permission` in the group called `group`.
    pub fn allows(&self, claims: &TicketClaims, group: &str, permission: Permission) -> bool {
        let name = self.resource.as_deref().unwrap_or(group);
        claims.may(self.kind, name, permission)
    }

    /// Whether `claims` let a node take part in `role`.
    pub fn allows_role(&self, claims: &TicketClaims, group: &str, role: GroupRole) -> bool {
        match role {
            GroupRole::Voter => self.allows(claims, group, self.voter),
            GroupRole::Learner => {
                self.allows(claims, group, self.learner) || self.allows(claims, group, self.voter)
            }
        }
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            voters: 3,
            role: GroupRole::Voter,
            members: Vec::new(),
            // A follower grants no vote while the leader's lease (the
            // election timeout's maximum) runs, then waits its own random
            // timeout: a dead leader is replaced in 0.6 to 0.8 s.
            heartbeat: Duration::from_millis(50),
            learner_heartbeat: Duration::from_secs(2),
            election_timeout: (Duration::from_millis(200), Duration::from_millis(400)),
            snapshot_every: 5000,
            keep_logs: 1000,
            replace_after: Duration::from_secs(30),
            max_batch: 1024,
            max_batch_bytes: 64 << 10,
            max_in_flight: 2,
            queue: 4096,
            write_timeout: Duration::from_secs(5),
            max_frame: DEFAULT_MAX_FRAME,
            max_snapshot_bytes: 256 << 20,
            upkeep_every: Duration::from_millis(250),
            access: Access::default(),
        }
    }
}

impl GroupConfig {
    /// A config with `voters` voters and defaults for the rest.
    pub fn with_voters(voters: usize) -> GroupConfig {
        GroupConfig {
            voters,
            ..GroupConfig::default()
        }
    }

    /// Check the settings; `Err` names the first bad one.
    pub fn check(&self) -> Result<(), String> {
        if self.voters == 0 || self.voters > 9 {
            return Err(format!("voters must be 1 to 9, not {}", self.voters));
        }
        if !self.members.is_empty() && self.members.len() != self.voters {
            return Err(format!(
                "{} explicit members for {} voters",
                self.members.len(),
                self.voters
            ));
        }
        let (lo, hi) = self.election_timeout;
        if lo <= self.heartbeat || hi <= lo {
            return Err("election timeout must exceed the heartbeat, min below max".into());
        }
        if self.learner_heartbeat < self.heartbeat {
            return Err("the learner heartbeat must be at least the heartbeat".into());
        }
        if self.max_batch == 0 || self.max_in_flight == 0 || self.queue == 0 {
            return Err("batch, in-flight and queue bounds must be positive".into());
        }
        if self.max_batch_bytes.saturating_mul(2) > self.max_frame {
            return Err("max_batch_bytes must be at most half of max_frame".into());
        }
        Ok(())
    }

    /// openraft's configuration for these settings.
    pub(crate) fn raft_config(&self, name: &str) -> Result<openraft::Config, String> {
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let config = openraft::Config {
            cluster_name: name.to_string(),
            heartbeat_interval: ms(self.heartbeat).max(1),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            install_snapshot_timeout: ms(self.write_timeout).max(1000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.keep_logs,
            // An append carries at most this many entries, each at most
            // `max_batch_bytes` (plus framing): keep a frame within
            // `max_frame` with room to spare. With the defaults, 32 entries.
            max_payload_entries: ((self.max_frame / 2 / self.max_batch_bytes.max(1)) as u64)
                .clamp(1, 256),
            snapshot_max_chunk_size: (self.max_frame / 2) as u64,
            ..openraft::Config::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_settings_are_named() {
        assert_eq!(GroupConfig::default().check(), Ok(()));
        assert!(GroupConfig::default().raft_config("g").is_ok());
        assert!(GroupConfig::with_voters(0).check().is_err());
        let c = GroupConfig {
            election_timeout: (Duration::from_millis(50), Duration::from_millis(600)),
            ..GroupConfig::default()
        };
        assert!(c.check().expect_err("short timeout").contains("heartbeat"));
        let c = GroupConfig {
            members: vec![NodeId([1; 32])],
            ..GroupConfig::default()
        };
        assert!(c
            .check()
            .expect_err("one member")
            .contains("explicit members"));
        let c = GroupConfig {
            max_batch_bytes: DEFAULT_MAX_FRAME,
            ..GroupConfig::default()
        };
        assert!(c.check().is_err());
    }
}
