//! The peer table: which admitted connection carries each peer, as plain
//! state fed `(now, event)` and tested without sockets.
//!
//! It decides the duplicate-connection tie-break (both sides keep the
//! connection dialled by the smaller node id, so they agree without talking;
//! a connection from a new incarnation of the peer always replaces the old),
//! enforces `max_peers`, tracks each session's ticket claims (renewals
//! included), and sweeps out sessions whose ticket expired or was revoked and
//! connections that sat idle. It never touches a socket: every decision comes
//! back as [`Action`]s the transport carries out.
//!
//! `C` is whatever the transport closes a connection with (a
//! `quinn::Connection`; a plain value in tests). Connections are told apart by
//! a `conn_id` (quinn's `stable_id`).

use std::collections::HashMap;

use tessella_attestation::TicketClaims;

use crate::admission::{Admitted, Revocations};
use crate::id::NodeId;
use crate::wire::CloseCode;

/// One admitted session.
#[derive(Debug, Clone)]
pub struct Session<C> {
    /// The connection (what [`Action::Close`] hands back).
    pub conn: C,
    /// Tells this connection apart from an earlier or later one to the same peer.
    pub conn_id: u64,
    /// Who dialled: the tie-break keeps the connection the smaller id dialled.
    pub dialer: NodeId,
    /// Verified identity and the ticket claims in force.
    pub admitted: Admitted,
    /// When the session was admitted (node milliseconds).
    pub since_ms: u64,
    /// Last stream opened, accepted or written (node milliseconds).
    pub active_ms: u64,
    /// Subsystems holding the connection open regardless of idleness.
    pub pins: usize,
}

/// What the transport must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<C> {
    /// Close this connection with `code` and `reason`.
    Close {
        /// The connection.
        conn: C,
        /// The peer it belongs to.
        peer: NodeId,
        /// The close code.
        code: CloseCode,
        /// A fixed reason (never peer-chosen text).
        reason: &'static str,
    },
    /// A peer became available: tell the handlers.
    Up(NodeId),
    /// A peer's claims changed (renewed ticket): tell the handlers.
    Updated(NodeId),
    /// A peer is gone: tell the handlers.
    Down(NodeId),
}

/// The outcome of offering an admitted connection to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer<C> {
    /// The connection now carries the peer; carry out the actions (a
    /// replaced duplicate is closed; `Up` when the peer is new).
    Kept(Vec<Action<C>>),
    /// An equivalent connection already carries the peer: close this one
    /// with `Normal` ("duplicate connection").
    Duplicate,
    /// `max_peers` reached: refuse this one ("too many peers").
    Full,
}

/// Admitted sessions by peer, bounded by `max_peers`.
#[derive(Debug)]
pub struct PeerTable<C> {
    me: NodeId,
    max_peers: usize,
    sessions: HashMap<NodeId, Session<C>>,
}

impl<C: Clone> PeerTable<C> {
    /// An empty table for node `me` holding at most `max_peers` sessions.
    pub fn new(me: NodeId, max_peers: usize) -> Self {
        PeerTable {
            me,
            max_peers,
            sessions: HashMap::new(),
        }
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no peer is connected.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether another session fits.
    pub fn has_room(&self) -> bool {
        self.sessions.len() < self.max_peers
    }

    /// The session carrying `peer`.
    pub fn get(&self, peer: &NodeId) -> Option<&Session<C>> {
        self.sessions.get(peer)
    }

    /// Every session.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Session<C>)> {
        self.sessions.iter()
    }

    /// An admitted connection (`dialer` dialled it) offered at `now_ms`.
    /// `live` says whether the session currently in the table (if any) is
    /// still open; a closed one is replaced without a tie-break.
    pub fn offer(
        &mut self,
        conn: C,
        conn_id: u64,
        admitted: Admitted,
        dialer: NodeId,
        now_ms: u64,
        live: impl Fn(&C) -> bool,
    ) -> Offer<C> {
        let peer = admitted.identity.node_id;
        let mut actions = Vec::new();
        match self.sessions.get(&peer) {
            // The peer restarted (same id, new incarnation): whatever we
            // still hold is its dead predecessor's connection, which QUIC
            // would only notice at its idle timeout. The new one carries the
            // peer; subsystems hear it went down and came back.
            Some(existing)
                if live(&existing.conn)
                    && existing.admitted.incarnation != admitted.incarnation =>
            {
                actions.push(Action::Close {
                    conn: existing.conn.clone(),
                    peer,
                    code: CloseCode::Normal,
                    reason: "peer restarted",
                });
                actions.push(Action::Down(peer));
                actions.push(Action::Up(peer));
            }
            Some(existing) if live(&existing.conn) => {
                let preferred = std::cmp::min(self.me, peer);
                if existing.dialer == preferred || dialer != preferred {
                    return Offer::Duplicate;
                }
                actions.push(Action::Close {
                    conn: existing.conn.clone(),
                    peer,
                    code: CloseCode::Normal,
                    reason: "duplicate connection",
                });
            }
            Some(_) => {}
            None if !self.has_room() => return Offer::Full,
            None => actions.push(Action::Up(peer)),
        }
        let pins = self.sessions.get(&peer).map_or(0, |s| s.pins);
        self.sessions.insert(
            peer,
            Session {
                conn,
                conn_id,
                dialer,
                admitted,
                since_ms: now_ms,
                active_ms: now_ms,
                pins,
            },
        );
        Offer::Kept(actions)
    }

    /// Connection `conn_id` to `peer` ended. `Down` only if it was the one
    /// carrying the peer (a replaced duplicate ending changes nothing).
    pub fn closed(&mut self, peer: NodeId, conn_id: u64) -> Option<Action<C>> {
        if self.sessions.get(&peer)?.conn_id != conn_id {
            return None;
        }
        self.sessions.remove(&peer);
        Some(Action::Down(peer))
    }

    /// Traffic on `peer`'s connection at `now_ms`: it is not idle.
    pub fn touch(&mut self, peer: &NodeId, now_ms: u64) {
        if let Some(s) = self.sessions.get_mut(peer) {
            s.active_ms = s.active_ms.max(now_ms);
        }
    }

    /// A subsystem holds `peer`'s connection open (`+1`) or lets it go (`-1`).
    pub fn pin(&mut self, peer: &NodeId, delta: isize) {
        if let Some(s) = self.sessions.get_mut(peer) {
            s.pins = s.pins.saturating_add_signed(delta);
        }
    }

    /// A renewed ticket for `peer`, already validated for it (signature,
    /// audience, `sub`, revocation): it carries the session from now on.
    pub fn renewed(&mut self, peer: &NodeId, claims: TicketClaims) -> Option<Action<C>> {
        let s = self.sessions.get_mut(peer)?;
        if s.admitted.claims == claims {
            return None;
        }
        s.admitted.claims = claims;
        Some(Action::Updated(*peer))
    }

    /// Sessions that rely on a ticket `revoked` covers: close them now.
    pub fn revoked(&self, revoked: &Revocations) -> Vec<Action<C>> {
        self.sessions
            .iter()
            .filter(|(_, s)| revoked.covers(&s.admitted.claims))
            .map(|(peer, s)| Action::Close {
                conn: s.conn.clone(),
                peer: *peer,
                code: CloseCode::TicketRevoked,
                reason: "ticket revoked",
            })
            .collect()
    }

    /// Periodic sweep at `now_unix` (seconds, the node's clock) and `now_ms`
    /// (node milliseconds): sessions whose ticket expired more than `leeway`
    /// seconds ago close with `TicketExpired`; unpinned connections without
    /// traffic for `idle_ms` close with `Normal` ("idle"). The table keeps
    /// them until their sessions report [`closed`](Self::closed).
    pub fn sweep(&self, now_unix: u64, leeway: u64, now_ms: u64, idle_ms: u64) -> Vec<Action<C>> {
        let mut out = Vec::new();
        for (peer, s) in &self.sessions {
            if now_unix > s.admitted.ticket_expires().saturating_add(leeway) {
                out.push(Action::Close {
                    conn: s.conn.clone(),
                    peer: *peer,
                    code: CloseCode::TicketExpired,
                    reason: "ticket expired",
                });
            } else if s.pins == 0 && now_ms.saturating_sub(s.active_ms) >= idle_ms {
                out.push(Action::Close {
                    conn: s.conn.clone(),
                    peer: *peer,
                    code: CloseCode::Normal,
                    reason: "idle",
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tessella_attestation::dev::DevTd;
    use tessella_attestation::ratls::PeerIdentity;
    use tessella_attestation::{Fmspc, TicketClaims};

    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn claims(sub: NodeId, exp: u64) -> TicketClaims {
        serde_json::from_value(serde_json::json!({
            "sub": sub.to_string(), "aud": "t", "iss": "i", "iat": 0, "nbf": 0, "exp": exp,
            "jti": format!("jti-{exp}"),
        }))
        .expect("claims")
    }

    fn admitted(peer: NodeId, exp: u64) -> Admitted {
        Admitted {
            identity: Arc::new(PeerIdentity {
                node_id: peer,
                measurements: DevTd::named("peer-table").measurements,
                matched_entry: None,
                tcb_status: "UpToDate".into(),
                advisory_ids: Vec::new(),
                fmspc: Fmspc([0; 6]),
                anchor: "test".into(),
                cert_not_before: 0,
                cert_not_after: u64::MAX,
                verdict_expires: u64::MAX,
            }),
            claims: claims(peer, exp),
            incarnation: 7,
        }
    }

    /// A table for `me`; connections are plain names.
    fn table(me: u8, max: usize) -> PeerTable<&'static str> {
        PeerTable::new(id(me), max)
    }

    const LIVE: fn(&&str) -> bool = |_| true;

    #[test]
    fn a_new_peer_comes_up_once() {
        let mut t = table(1, 8);
        let offer = t.offer("c1", 1, admitted(id(2), 100), id(1), 0, LIVE);
        assert_eq!(offer, Offer::Kept(vec![Action::Up(id(2))]));
        assert_eq!(t.len(), 1);
        assert_eq!(t.closed(id(2), 1), Some(Action::Down(id(2))));
        assert!(t.is_empty());
        assert_eq!(t.closed(id(2), 1), None, "a second close is a no-op");
    }

    #[test]
    fn duplicate_tie_break_keeps_the_smaller_ids_dial_on_both_sides() {
        // Node 1 and node 2 dial each other at once. Both keep the
        // connection node 1 (the smaller id) dialled.
        let (a, b) = (id(1), id(2));
        // On node 1: its own dial (conn "a->b") arrives first, then b's.
        let mut on_a = table(1, 8);
        assert!(matches!(
            on_a.offer("a->b", 10, admitted(b, 100), a, 0, LIVE),
            Offer::Kept(_)
        ));
        assert_eq!(
            on_a.offer("b->a", 11, admitted(b, 100), b, 1, LIVE),
            Offer::Duplicate
        );
        assert_eq!(on_a.get(&b).map(|s| s.conn), Some("a->b"));
        // On node 2: b's own dial arrives first, then a's replaces it.
        let mut on_b = table(2, 8);
        assert!(matches!(
            on_b.offer("b->a", 11, admitted(a, 100), b, 0, LIVE),
            Offer::Kept(_)
        ));
        let offer = on_b.offer("a->b", 10, admitted(a, 100), a, 1, LIVE);
        assert_eq!(
            offer,
            Offer::Kept(vec![Action::Close {
                conn: "b->a",
                peer: a,
                code: CloseCode::Normal,
                reason: "duplicate connection"
            }]),
            "replacing a duplicate is not a new peer"
        );
        assert_eq!(on_b.get(&a).map(|s| s.conn), Some("a->b"));
        // The replaced connection ending does not take the peer down.
        assert_eq!(on_b.closed(a, 11), None);
        assert_eq!(on_b.len(), 1);
    }

    #[test]
    fn a_restarted_peer_replaces_its_dead_predecessors_connection() {
        // Node 2 was killed and restarted on its data dir: same id, new
        // incarnation. Node 1 still holds the old connection (QUIC has not
        // noticed) and the tie-break would keep it, as node 1 dialled it.
        let mut t = table(1, 8);
        let _ = t.offer("old", 1, admitted(id(2), 100), id(1), 0, LIVE);
        let mut reborn = admitted(id(2), 100);
        reborn.incarnation = 8;
        let offer = t.offer("new", 2, reborn, id(2), 5, LIVE);
        assert_eq!(
            offer,
            Offer::Kept(vec![
                Action::Close {
                    conn: "old",
                    peer: id(2),
                    code: CloseCode::Normal,
                    reason: "peer restarted"
                },
                Action::Down(id(2)),
                Action::Up(id(2)),
            ])
        );
        assert_eq!(t.get(&id(2)).map(|s| s.conn), Some("new"));
        assert_eq!(
            t.closed(id(2), 1),
            None,
            "the old connection ending is no news"
        );
        // The same incarnation dialling again is a plain duplicate.
        let mut again = admitted(id(2), 100);
        again.incarnation = 8;
        assert_eq!(t.offer("dup", 3, again, id(2), 6, LIVE), Offer::Duplicate);
    }

    #[test]
    fn a_closed_session_is_replaced_without_a_tie_break() {
        let mut t = table(1, 8);
        let _ = t.offer("old", 1, admitted(id(2), 100), id(1), 0, LIVE);
        let offer = t.offer("new", 2, admitted(id(2), 100), id(2), 5, |c| *c != "old");
        assert_eq!(offer, Offer::Kept(vec![]));
        assert_eq!(t.get(&id(2)).map(|s| s.conn), Some("new"));
    }

    #[test]
    fn max_peers_refuses_new_peers_but_not_known_ones() {
        let mut t = table(1, 2);
        let _ = t.offer("c2", 2, admitted(id(2), 100), id(1), 0, LIVE);
        let _ = t.offer("c3", 3, admitted(id(3), 100), id(1), 0, LIVE);
        assert!(!t.has_room());
        assert_eq!(
            t.offer("c4", 4, admitted(id(4), 100), id(1), 0, LIVE),
            Offer::Full
        );
        // A better connection to a known peer still gets in.
        assert!(matches!(
            t.offer("c3b", 5, admitted(id(3), 100), id(1), 0, |_| false),
            Offer::Kept(_)
        ));
        assert_eq!(t.closed(id(2), 2), Some(Action::Down(id(2))));
        assert!(matches!(
            t.offer("c4", 4, admitted(id(4), 100), id(1), 0, LIVE),
            Offer::Kept(_)
        ));
    }

    #[test]
    fn expiry_sweep_closes_after_the_leeway() {
        let mut t = table(1, 8);
        let _ = t.offer("c2", 2, admitted(id(2), 100), id(1), 0, LIVE);
        let _ = t.offer("c3", 3, admitted(id(3), 500), id(1), 0, LIVE);
        assert!(t.sweep(130, 30, 0, u64::MAX).is_empty(), "within leeway");
        assert_eq!(
            t.sweep(131, 30, 0, u64::MAX),
            vec![Action::Close {
                conn: "c2",
                peer: id(2),
                code: CloseCode::TicketExpired,
                reason: "ticket expired"
            }]
        );
    }

    #[test]
    fn renewal_updates_claims_and_postpones_expiry() {
        let mut t = table(1, 8);
        let _ = t.offer("c2", 2, admitted(id(2), 100), id(1), 0, LIVE);
        assert_eq!(
            t.renewed(&id(2), claims(id(2), 1000)),
            Some(Action::Updated(id(2)))
        );
        assert_eq!(t.renewed(&id(2), claims(id(2), 1000)), None, "same claims");
        assert!(t.sweep(500, 30, 0, u64::MAX).is_empty());
        assert_eq!(
            t.get(&id(2)).map(|s| s.admitted.ticket_expires()),
            Some(1000)
        );
        assert_eq!(t.renewed(&id(9), claims(id(9), 1000)), None, "unknown peer");
    }

    #[test]
    fn revocation_closes_sessions_covered_by_jti_or_node_id() {
        let mut t = table(1, 8);
        let _ = t.offer("c2", 2, admitted(id(2), 100), id(1), 0, LIVE);
        let _ = t.offer("c3", 3, admitted(id(3), 200), id(1), 0, LIVE);
        let mut r = Revocations::default();
        assert!(t.revoked(&r).is_empty());
        assert!(r.revoke(&id(3).to_string()));
        assert_eq!(
            t.revoked(&r),
            vec![Action::Close {
                conn: "c3",
                peer: id(3),
                code: CloseCode::TicketRevoked,
                reason: "ticket revoked"
            }]
        );
        assert!(r.revoke("jti-100"));
        assert_eq!(t.revoked(&r).len(), 2);
    }

    #[test]
    fn idle_connections_close_unless_pinned_or_busy() {
        let mut t = table(1, 8);
        let _ = t.offer("c2", 2, admitted(id(2), 10_000), id(1), 0, LIVE);
        let _ = t.offer("c3", 3, admitted(id(3), 10_000), id(1), 0, LIVE);
        let _ = t.offer("c4", 4, admitted(id(4), 10_000), id(1), 0, LIVE);
        t.pin(&id(3), 1);
        t.touch(&id(4), 900);
        let closes = t.sweep(0, 0, 1000, 1000);
        assert_eq!(
            closes,
            vec![Action::Close {
                conn: "c2",
                peer: id(2),
                code: CloseCode::Normal,
                reason: "idle"
            }]
        );
        t.pin(&id(3), -1);
        let mut idle: Vec<_> = t
            .sweep(0, 0, 2000, 1000)
            .into_iter()
            .filter_map(|a| match a {
                Action::Close { conn, .. } => Some(conn),
                _ => None,
            })
            .collect();
        idle.sort();
        assert_eq!(idle, vec!["c2", "c3", "c4"]);
    }
}
