//! Raft group helpers: a map of registers as the replicated state machine
//! (writes and compare-and-swap, the operations the linearizability checker
//! knows), tickets granting groups, and group nodes from a [`Fixture`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessella_attestation::{Permission, ResourceKind};
use tessella_node::groups::{Group, GroupConfig, StateMachine};
use tessella_node::{Node, TicketSource};

use super::cluster::{now, Fixture};
use crate::lincheck::RegRet;

/// A write to one register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegCmd {
    /// Set `key` to the value.
    Write(u64, u64),
    /// Set `key` to `new` if it holds `expect`.
    Cas {
        /// The register.
        key: u64,
        /// The value it must hold.
        expect: u64,
        /// The value written when it does.
        new: u64,
    },
}

/// What a write returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegOut {
    /// The write happened.
    Written,
    /// The CAS found `expect` and wrote.
    Swapped,
    /// The CAS found another value (or none).
    Mismatch,
}

impl From<RegOut> for RegRet {
    fn from(o: RegOut) -> RegRet {
        match o {
            RegOut::Written => RegRet::WriteOk,
            RegOut::Swapped => RegRet::CasOk,
            RegOut::Mismatch => RegRet::CasFail,
        }
    }
}

/// Registers by key: the machine group tests replicate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registers(pub BTreeMap<u64, u64>);

impl StateMachine for Registers {
    type Command = RegCmd;
    type Output = RegOut;
    type Query = u64;
    type QueryOutput = Option<u64>;

    fn apply(&mut self, cmd: RegCmd) -> RegOut {
        match cmd {
            RegCmd::Write(k, v) => {
                self.0.insert(k, v);
                RegOut::Written
            }
            RegCmd::Cas { key, expect, new } => {
                if self.0.get(&key) == Some(&expect) {
                    self.0.insert(key, new);
                    RegOut::Swapped
                } else {
                    RegOut::Mismatch
                }
            }
        }
    }

    fn query(&self, key: &u64) -> Option<u64> {
        self.0.get(key).copied()
    }

    fn snapshot(&self) -> Vec<u8> {
        // Pairs in key order: deterministic on every member.
        let mut out = Vec::with_capacity(self.0.len() * 16);
        for (k, v) in &self.0 {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        if !bytes.len().is_multiple_of(16) {
            return Err(format!("snapshot of {} bytes is not pairs", bytes.len()));
        }
        let word = |b: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            u64::from_le_bytes(w)
        };
        self.0 = bytes
            .chunks_exact(16)
            .map(|c| (word(&c[..8]), word(&c[8..])))
            .collect();
        Ok(())
    }
}

impl Fixture {
    /// A self-issued ticket source granting `join` and `write` on `groups`.
    pub fn group_ticket(&self, groups: &[&str]) -> TicketSource {
        let mut template = self.issuer.claims("template", &self.network, now(), 3600);
        for g in groups {
            template = template
                .grant(ResourceKind::Group, *g, Permission::Join)
                .grant(ResourceKind::Group, *g, Permission::Write);
        }
        TicketSource::IssuerGranting(self.issuer.clone(), 3600, Arc::new(template))
    }

    /// A good node whose ticket grants `groups`, on `data_dir` (None: a
    /// fresh one), bootstrapping from `bootstrap`.
    pub async fn group_node(
        &self,
        groups: &[&str],
        data_dir: Option<std::path::PathBuf>,
        bootstrap: Vec<std::net::SocketAddr>,
    ) -> Node {
        let mut o = self.options();
        o.ticket = self.group_ticket(groups);
        o.bootstrap = bootstrap;
        if let Some(dir) = data_dir {
            o.data_dir = Some(dir);
        }
        o.build().await.expect("group node starts")
    }
}

/// Timing for tests: the defaults, with `replace_after` short so
/// replacement shows within a test.
pub fn test_config(voters: usize) -> GroupConfig {
    GroupConfig::with_voters(voters)
}

/// Join `name` with [`Registers`] on every node.
pub async fn join_all(nodes: &[Node], name: &str, config: &GroupConfig) -> Vec<Group<Registers>> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(
            n.groups()
                .join::<Registers>(name, config.clone())
                .await
                .expect("join the group"),
        );
    }
    out
}
