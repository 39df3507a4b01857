//! The test kit, used by the integration tests and the benchmarks:
//!
//! - [`faults`]: link faults (cut, heal, delay, loss, isolate) injected
//!   beneath the real QUIC stack through quinn's abstract UDP socket,
//!   deterministic from a seed.
//! - [`cluster`]: a [`Fixture`](cluster::Fixture) (one dev PKI, TD, ticket
//!   issuer, network, fault plan and temp dir) that starts dev nodes through
//!   the node's one assembly, each with its own data dir, so a node can be
//!   stopped and restarted with the same id; raw RA-TLS peers that misbehave
//!   on purpose; bounded waits with reasons, scaled by `TESSELLA_TIME_SCALE`.
//! - [`groups`]: a register machine for Raft group tests and tickets that
//!   grant `join` and `write` on groups.
//! - [`member`]: `tessella-node dev --member I` as a child process, to
//!   `kill -9` and start again or to freeze (SIGSTOP) and thaw (SIGCONT);
//!   a minimal blocking HTTP client for its admin API.

pub mod cluster;
pub mod faults;
pub mod groups;
pub mod member;

pub use cluster::*;
pub use groups::{join_all, test_config, RegCmd, RegOut, Registers};
pub use member::{free_ports, http_get, http_request, HttpError, Member};
