//! Updates between admitted peers on control-family uni streams: collateral
//! relay, and renewed tickets.
//!
//! Peers pass Intel-signed collateral to each other, so a node learns bundles
//! for platforms it has not seen yet without any network access of its own;
//! and a node whose ticket was renewed presents the new one, so sessions
//! admitted under the old ticket outlive its expiry.
//!
//! ```text
//! uni stream, header Control/1, then frames:
//!   CollateralMsg::V1(Bundle{json})   one per bundle held, sent after admission
//!   CollateralMsg::V1(Ticket{token})  sent to every peer when the ticket changes
//! ```
//!
//! Relayed bytes are never trusted for being relayed: a bundle is stored only
//! after dcap-qvl verified a real quote of that platform against it under this
//! node's trust anchor (its own quote, or the quote of a peer that was refused
//! only for lack of that collateral). Bundles that cannot be checked yet wait
//! in a small bounded set until such a quote shows up.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tessella_attestation::{Collateral, Fmspc};

/// Messages on relay streams. Versioned: a later protocol adds variants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CollateralMsg {
    /// Protocol version 1.
    V1(CollateralV1),
}

/// Version 1 relay messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CollateralV1 {
    /// One `QuoteCollateralV3` JSON bundle.
    Bundle {
        /// The JSON bytes.
        json: Vec<u8>,
    },
    /// The sender's renewed ticket (`sub` = its node id). Validated like the
    /// admission ticket; a refused one leaves the old ticket in force.
    Ticket {
        /// The JWT.
        token: String,
    },
}

/// Most bundles waiting for a quote to verify them against.
pub const MAX_PENDING: usize = 16;

/// Relayed bundles not verified yet, newest per platform, bounded.
#[derive(Debug, Default)]
pub struct Pending {
    by_fmspc: HashMap<Fmspc, Collateral>,
}

impl Pending {
    /// Keep `c` unless a newer bundle for its platform waits already, or the
    /// set is full of other platforms. Returns whether it was kept.
    pub fn offer(&mut self, c: Collateral) -> bool {
        let fmspc = c.fmspc();
        match self.by_fmspc.get(&fmspc) {
            Some(old)
                if old.eval_data_number() >= c.eval_data_number()
                    && old.validity().not_after >= c.validity().not_after =>
            {
                false
            }
            Some(_) => {
                self.by_fmspc.insert(fmspc, c);
                true
            }
            None if self.by_fmspc.len() >= MAX_PENDING => false,
            None => {
                self.by_fmspc.insert(fmspc, c);
                true
            }
        }
    }

    /// Take the waiting bundle for `fmspc`.
    pub fn take(&mut self, fmspc: &Fmspc) -> Option<Collateral> {
        self.by_fmspc.remove(fmspc)
    }

    /// Platforms with a waiting bundle.
    pub fn fmspcs(&self) -> Vec<Fmspc> {
        self.by_fmspc.keys().copied().collect()
    }

    /// Number of waiting bundles.
    pub fn len(&self) -> usize {
        self.by_fmspc.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_fmspc.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessella_attestation::dev::{DevPki, DevPlatform};

    fn bundle(fmspc: [u8; 6]) -> Collateral {
        DevPki::generate_for(
            b"relay",
            DevPlatform {
                fmspc,
                ..DevPlatform::default()
            },
        )
        .expect("pki")
        .collateral()
        .clone()
    }

    #[test]
    fn pending_is_bounded_and_keeps_one_per_platform() {
        let mut p = Pending::default();
        let a = bundle([1, 0, 0, 0, 0, 0]);
        assert!(p.offer(a.clone()));
        assert!(!p.offer(a.clone()), "same bundle again is not newer");
        for i in 2..=MAX_PENDING as u8 {
            assert!(p.offer(bundle([i, 0, 0, 0, 0, 0])));
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert!(!p.offer(bundle([200, 0, 0, 0, 0, 0])), "full");
        assert!(p.take(&a.fmspc()).is_some());
        assert!(p.take(&a.fmspc()).is_none());
    }
}
