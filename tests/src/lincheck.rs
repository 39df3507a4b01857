//! A history recorder and linearizability checker for key-value registers,
//! on stateright's `LinearizabilityTester` (Wing & Gong's search): each key
//! is an independent register, so the history is checked key by key.
//!
//! Clients record every invocation and its outcome: a definite return, a
//! definite failure (dropped), or unknown (`info`: a timeout or a lost
//! connection), which the checker may place anywhere after the invocation or
//! leave out.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// An operation on one register (a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegOp {
    /// Read the register's value.
    Read,
    /// Overwrite the register's value.
    Write(u64),
    /// Set the register to `new` if it holds `expect`; an absent register holds
    /// no `expect`, so a CAS on it fails.
    Cas {
        /// The value the register must hold for the swap to happen.
        expect: u64,
        /// The value written when it does.
        new: u64,
    },
}

/// What the system answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegRet {
    /// The value read; registers start absent (`None`).
    Read(Option<u64>),
    /// The write took effect.
    WriteOk,
    /// The CAS found `expect` and wrote `new`.
    CasOk,
    /// The CAS found another value (or none) and wrote nothing.
    CasFail,
}

/// The sequential specification of one register, which starts absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegisterSpec(pub Option<u64>);

impl SequentialSpec for RegisterSpec {
    type Op = RegOp;
    type Ret = RegRet;

    fn invoke(&mut self, op: &RegOp) -> RegRet {
        match *op {
            RegOp::Read => RegRet::Read(self.0),
            RegOp::Write(v) => {
                self.0 = Some(v);
                RegRet::WriteOk
            }
            RegOp::Cas { expect, new } => {
                if self.0 == Some(expect) {
                    self.0 = Some(new);
                    RegRet::CasOk
                } else {
                    RegRet::CasFail
                }
            }
        }
    }
}

/// Names one recorded invocation, to report its outcome with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpToken(usize);

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Pending,
    Ok { ret: RegRet, returned: u64 },
    Failed,
    Info,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    client: u64,
    key: u64,
    op: RegOp,
    invoked: u64,
    outcome: Outcome,
}

impl Record {
    fn indeterminate(&self) -> bool {
        matches!(self.outcome, Outcome::Pending | Outcome::Info)
    }

    fn render(&self) -> String {
        let head = format!(
            "client {} {:?} invoked@{}",
            self.client, self.op, self.invoked
        );
        match self.outcome {
            Outcome::Pending => format!("{head} -> pending (unknown)"),
            Outcome::Info => format!("{head} -> info (unknown)"),
            Outcome::Failed => format!("{head} -> failed"),
            Outcome::Ok { ret, returned } => format!("{head} returned@{returned} -> {ret:?}"),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    records: Vec<Record>,
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn settle(&mut self, token: OpToken, outcome: impl FnOnce(u64) -> Outcome) {
        let seq = self.next_seq();
        if let Some(record) = self.records.get_mut(token.0) {
            if matches!(record.outcome, Outcome::Pending) {
                record.outcome = outcome(seq);
            }
        }
    }
}

/// A shared, thread-safe history recorder, used by many concurrent client
/// tasks; clones record into the same history.
///
/// Every event takes the next number of one global sequence under a mutex, so
/// the history keeps the real-time order of invocations and returns.
#[derive(Clone, Debug, Default)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
}

/// What a successful [`History::check`] looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Keys (registers) checked.
    pub keys: usize,
    /// Operations with a definite return, all of which were linearized.
    pub definite: usize,
    /// Writes and CASes with an unknown outcome, linearized only where needed.
    pub indeterminate: usize,
    /// Operations left out: failed ones and reads with an unknown outcome.
    pub dropped: usize,
}

/// A key whose sub-history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// The key (register) at fault.
    pub key: u64,
    /// Why the checker gave up.
    pub reason: String,
    /// Every operation recorded on the key, in invocation order, as text.
    pub ops: Vec<String>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {}: {}", self.key, self.reason)?;
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Anomaly {}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record an invocation by client `client` on `key`; returns a token to
    /// report its outcome with. A client runs one operation at a time.
    pub fn invoke(&self, client: u64, key: u64, op: RegOp) -> OpToken {
        let mut inner = self.lock();
        let invoked = inner.next_seq();
        inner.records.push(Record {
            client,
            key,
            op,
            invoked,
            outcome: Outcome::Pending,
        });
        OpToken(inner.records.len() - 1)
    }

    /// Record the operation's definite return. Only the first outcome given
    /// for a token counts.
    pub fn ok(&self, token: OpToken, ret: RegRet) {
        self.lock()
            .settle(token, |returned| Outcome::Ok { ret, returned });
    }

    /// The operation failed definitely without effect (e.g. the server said
    /// "not leader" before proposing): it is dropped from the history.
    pub fn fail(&self, token: OpToken) {
        self.lock().settle(token, |_| Outcome::Failed);
    }

    /// The outcome is unknown (timeout, connection lost): the operation may or
    /// may not have taken effect, at any time after its invocation. An
    /// operation still pending when the history is checked counts the same.
    pub fn info(&self, token: OpToken) {
        self.lock().settle(token, |_| Outcome::Info);
    }

    /// The number of invocations recorded.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check every key's sub-history for linearizability (registers are
    /// independent, so a history is linearizable when each key's is).
    pub fn check(&self) -> Result<CheckStats, Anomaly> {
        let records = self.lock().records.clone();
        let mut by_key: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
        for record in records {
            by_key.entry(record.key).or_default().push(record);
        }
        let mut stats = CheckStats {
            keys: by_key.len(),
            ..CheckStats::default()
        };
        // Stale reads on any key first: proving them needs no search.
        for (key, records) in &by_key {
            if let Some(reason) = stale_read(records) {
                return Err(Anomaly {
                    key: *key,
                    reason,
                    ops: records.iter().map(Record::render).collect(),
                });
            }
        }
        for (key, records) in by_key {
            let key_stats = check_key(key, &records)?;
            stats.definite += key_stats.definite;
            stats.indeterminate += key_stats.indeterminate;
            stats.dropped += key_stats.dropped;
        }
        Ok(stats)
    }
}

enum Event {
    Invoke(usize),
    Return(usize),
}

/// Checks one key's records, given in invocation order.
fn check_key(key: u64, records: &[Record]) -> Result<CheckStats, Anomaly> {
    let anomaly = |reason: String| Anomaly {
        key,
        reason,
        ops: records.iter().map(Record::render).collect(),
    };
    let mut stats = CheckStats {
        keys: 1,
        ..CheckStats::default()
    };
    let mut events: Vec<(u64, Event)> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        match record.outcome {
            Outcome::Failed => stats.dropped += 1,
            _ if record.indeterminate() && record.op == RegOp::Read => stats.dropped += 1,
            Outcome::Ok { returned, .. } => {
                stats.definite += 1;
                events.push((record.invoked, Event::Invoke(i)));
                events.push((returned, Event::Return(i)));
            }
            Outcome::Pending | Outcome::Info => {
                stats.indeterminate += 1;
                events.push((record.invoked, Event::Invoke(i)));
            }
        }
    }
    events.sort_by_key(|(seq, _)| *seq);

    // A tester thread runs one operation at a time, so a client whose
    // operation is still in flight (its outcome unknown, or a client running
    // two at once) goes on under a fresh thread id.
    let mut next_thread = 0u64;
    let mut current: BTreeMap<u64, (u64, bool)> = BTreeMap::new(); // client -> (thread, busy)
    let mut thread_of: BTreeMap<usize, u64> = BTreeMap::new();
    let mut tester = LinearizabilityTester::<u64, RegisterSpec>::new(RegisterSpec(None));
    for (_, event) in events {
        let fed = match event {
            Event::Invoke(i) => {
                let Some(record) = records.get(i) else {
                    continue;
                };
                let slot = current.entry(record.client).or_insert_with(|| {
                    next_thread += 1;
                    (next_thread, false)
                });
                if slot.1 {
                    next_thread += 1;
                    slot.0 = next_thread;
                }
                slot.1 = true;
                thread_of.insert(i, slot.0);
                tester.on_invoke(slot.0, record.op).map(|_| ())
            }
            Event::Return(i) => {
                let (Some(record), Some(&thread)) = (records.get(i), thread_of.get(&i)) else {
                    continue;
                };
                let Outcome::Ok { ret, .. } = record.outcome else {
                    continue;
                };
                if let Some(slot) = current.get_mut(&record.client) {
                    if slot.0 == thread {
                        slot.1 = false;
                    }
                }
                tester.on_return(thread, ret).map(|_| ())
            }
        };
        fed.map_err(|e| anomaly(format!("the tester refused the history: {e}")))?;
    }
    if tester.is_consistent() {
        Ok(stats)
    } else {
        Err(anomaly("no linearization exists".to_string()))
    }
}

/// A proof that `records` (one key's) are not linearizable found without a
/// search: a read that returned a value, or nothing, which a write had
/// already overwritten before the read began. That is, a definite write `w`
/// invoked after the write of the value read returned (or at any time, for a
/// read of nothing), and returned before the read was invoked. Sound only
/// where one operation writes the value read, so values written more than
/// once, or by operations of unknown outcome, are skipped.
///
/// The search that follows finds every anomaly, but on a history that is not
/// linearizable it must try every order, which for thousands of concurrent
/// operations does not end in reasonable time; stale reads, the common
/// anomaly, are caught here in `O(reads * writes)`.
fn stale_read(records: &[Record]) -> Option<String> {
    // The operations that overwrote the register for sure, with when.
    let overwrote = |r: &Record| match (r.op, r.outcome) {
        (RegOp::Write(_), Outcome::Ok { returned, .. })
        | (
            RegOp::Cas { .. },
            Outcome::Ok {
                ret: RegRet::CasOk,
                returned,
            },
        ) => Some((r.invoked, returned)),
        _ => None,
    };
    let mut writers: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
    for r in records {
        if let RegOp::Write(v) | RegOp::Cas { new: v, .. } = r.op {
            writers.entry(v).or_default().push(r);
        }
    }
    let overwrites: Vec<(&Record, u64, u64)> = records
        .iter()
        .filter_map(|r| overwrote(r).map(|(i, ret)| (r, i, ret)))
        .collect();
    for read in records {
        let Outcome::Ok {
            ret: RegRet::Read(value),
            ..
        } = read.outcome
        else {
            continue;
        };
        // Any write that begins after this point and ends before the read
        // began overwrote what the read returned.
        let since = match value {
            None => 0,
            Some(v) => match writers.get(&v).map(Vec::as_slice) {
                Some([only]) => match overwrote(only) {
                    Some((_, returned)) => returned,
                    None => continue,
                },
                _ => continue,
            },
        };
        if let Some((w, _, _)) = overwrites
            .iter()
            .find(|(_, invoked, returned)| *invoked > since && *returned < read.invoked)
        {
            return Some(format!(
                "stale read: {} although {} had overwritten it",
                read.render(),
                w.render()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::faults::Rng;
    use std::time::Instant;

    fn write(h: &History, client: u64, key: u64, v: u64) {
        let t = h.invoke(client, key, RegOp::Write(v));
        h.ok(t, RegRet::WriteOk);
    }

    fn read(h: &History, client: u64, key: u64, v: Option<u64>) {
        let t = h.invoke(client, key, RegOp::Read);
        h.ok(t, RegRet::Read(v));
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = History::new();
        read(&h, 1, 0, None);
        write(&h, 1, 0, 5);
        read(&h, 2, 0, Some(5));
        let t = h.invoke(3, 0, RegOp::Cas { expect: 5, new: 6 });
        h.ok(t, RegRet::CasOk);
        let t = h.invoke(1, 0, RegOp::Cas { expect: 5, new: 7 });
        h.ok(t, RegRet::CasFail);
        read(&h, 2, 0, Some(6));
        let stats = h.check();
        assert_eq!(
            stats,
            Ok(CheckStats {
                keys: 1,
                definite: 6,
                indeterminate: 0,
                dropped: 0
            })
        );
        assert_eq!(h.len(), 6);
    }

    #[test]
    fn overlapping_writes_and_reads_pass() {
        let h = History::new();
        // w1 and w2 overlap; a read overlapping both sees 2, a later one too.
        let w1 = h.invoke(1, 0, RegOp::Write(1));
        let w2 = h.invoke(2, 0, RegOp::Write(2));
        let r1 = h.invoke(3, 0, RegOp::Read);
        h.ok(w2, RegRet::WriteOk);
        h.ok(r1, RegRet::Read(Some(2)));
        h.ok(w1, RegRet::WriteOk);
        // w1 may have landed before w2, so 2 is still readable; and a read
        // that overlapped a write may see the old value.
        let r2 = h.invoke(3, 0, RegOp::Read);
        let w3 = h.invoke(1, 0, RegOp::Write(3));
        h.ok(r2, RegRet::Read(Some(2)));
        h.ok(w3, RegRet::WriteOk);
        read(&h, 2, 0, Some(3));
        assert!(h.check().is_ok(), "{:?}", h.check());
    }

    #[test]
    fn stale_read_after_completed_write_is_an_anomaly() {
        let h = History::new();
        write(&h, 1, 0, 1);
        read(&h, 2, 0, None);
        let err = h.check().err();
        assert_eq!(err.as_ref().map(|a| a.key), Some(0), "{err:?}");
    }

    #[test]
    fn cas_success_contradicting_the_value_is_an_anomaly() {
        let h = History::new();
        write(&h, 1, 0, 1);
        let t = h.invoke(2, 0, RegOp::Cas { expect: 2, new: 3 });
        h.ok(t, RegRet::CasOk);
        assert!(h.check().is_err());
        // And a CAS that fails although the value matched.
        let h = History::new();
        write(&h, 1, 0, 1);
        let t = h.invoke(2, 0, RegOp::Cas { expect: 1, new: 3 });
        h.ok(t, RegRet::CasFail);
        assert!(h.check().is_err());
    }

    #[test]
    fn timed_out_write_observed_later_passes() {
        let h = History::new();
        write(&h, 1, 0, 1);
        let t = h.invoke(1, 0, RegOp::Write(2));
        h.info(t);
        // The same client goes on; its write lands later.
        read(&h, 1, 0, Some(1));
        read(&h, 2, 0, Some(2));
        read(&h, 1, 0, Some(2));
        let stats = h.check();
        assert!(stats.is_ok(), "{stats:?}");
        assert_eq!(stats.map(|s| s.indeterminate), Ok(1));
        // But once it was seen, the older value must not come back.
        read(&h, 3, 0, Some(1));
        assert!(h.check().is_err());
    }

    #[test]
    fn timed_out_write_never_observed_passes() {
        let h = History::new();
        write(&h, 1, 0, 1);
        let t = h.invoke(1, 0, RegOp::Write(2));
        h.info(t);
        read(&h, 1, 0, Some(1));
        read(&h, 2, 0, Some(1));
        // A pending write counts as indeterminate too, and a timed-out read is
        // dropped.
        let _pending = h.invoke(3, 0, RegOp::Write(3));
        let t = h.invoke(2, 0, RegOp::Read);
        h.info(t);
        read(&h, 1, 0, Some(1));
        let stats = h.check();
        assert_eq!(
            stats,
            Ok(CheckStats {
                keys: 1,
                definite: 4,
                indeterminate: 2,
                dropped: 1
            })
        );
    }

    #[test]
    fn failed_ops_are_dropped() {
        let h = History::new();
        write(&h, 1, 0, 1);
        let t = h.invoke(1, 0, RegOp::Write(2));
        h.fail(t);
        // A late return for a settled token is ignored.
        h.ok(t, RegRet::WriteOk);
        read(&h, 2, 0, Some(1));
        assert!(h.check().is_ok());
        read(&h, 2, 0, Some(2));
        assert!(h.check().is_err());
    }

    #[test]
    fn keys_are_checked_apart() {
        let h = History::new();
        write(&h, 1, 1, 10);
        write(&h, 2, 2, 20);
        read(&h, 3, 1, Some(10));
        // Key 2's value on key 1 would be fine if registers were shared.
        read(&h, 3, 3, None);
        read(&h, 1, 2, Some(20));
        read(&h, 1, 2, Some(10));
        read(&h, 2, 1, Some(10));
        let err = h.check().err();
        assert_eq!(err.as_ref().map(|a| a.key), Some(2), "{err:?}");
        let text = err.map(|a| a.to_string()).unwrap_or_default();
        assert!(text.contains("Read(Some(10))"), "{text}");
        assert!(!text.contains("Write(10)"), "{text}");
    }

    #[test]
    fn stale_reads_are_caught_without_a_search() {
        // Overwritten by a later write before the read began.
        let h = History::new();
        write(&h, 1, 0, 1);
        write(&h, 2, 0, 2);
        read(&h, 3, 0, Some(1));
        let err = h.check().err().map(|a| a.reason).unwrap_or_default();
        assert!(err.starts_with("stale read"), "{err}");
        // Nothing read after a write returned.
        let h = History::new();
        write(&h, 1, 0, 1);
        read(&h, 3, 0, None);
        let err = h.check().err().map(|a| a.reason).unwrap_or_default();
        assert!(err.starts_with("stale read"), "{err}");
        // A successful CAS overwrites too; a failed one does not.
        let h = History::new();
        write(&h, 1, 0, 1);
        let t = h.invoke(2, 0, RegOp::Cas { expect: 1, new: 2 });
        h.ok(t, RegRet::CasOk);
        let t = h.invoke(2, 0, RegOp::Cas { expect: 7, new: 3 });
        h.ok(t, RegRet::CasFail);
        read(&h, 3, 0, Some(2));
        assert!(h.check().is_ok(), "{:?}", h.check());
        read(&h, 3, 0, Some(1));
        let err = h.check().err().map(|a| a.reason).unwrap_or_default();
        assert!(err.starts_with("stale read"), "{err}");
    }

    #[test]
    fn what_the_stale_read_rule_cannot_prove_is_left_to_the_search() {
        // The writes overlap: 1 may land after 2, so reading 1 is fine.
        let h = History::new();
        let w1 = h.invoke(1, 0, RegOp::Write(1));
        write(&h, 2, 0, 2);
        h.ok(w1, RegRet::WriteOk);
        read(&h, 3, 0, Some(1));
        assert!(h.check().is_ok(), "{:?}", h.check());
        // A value written twice: the second write of 1 makes the read fine.
        let h = History::new();
        write(&h, 1, 0, 1);
        write(&h, 2, 0, 2);
        write(&h, 1, 0, 1);
        read(&h, 3, 0, Some(1));
        assert!(h.check().is_ok(), "{:?}", h.check());
        // A write of unknown outcome may land any time after its invocation.
        let h = History::new();
        let w1 = h.invoke(1, 0, RegOp::Write(1));
        h.info(w1);
        write(&h, 2, 0, 2);
        read(&h, 3, 0, Some(1));
        assert!(h.check().is_ok(), "{:?}", h.check());
        // A value nobody wrote is no stale read, but the search refuses it.
        let h = History::new();
        write(&h, 1, 0, 1);
        read(&h, 3, 0, Some(9));
        let err = h.check().err().map(|a| a.reason).unwrap_or_default();
        assert_eq!(err, "no linearization exists");
    }

    #[test]
    fn a_stale_read_in_a_large_history_is_caught_quickly() {
        // Too large for the search to refute in reasonable time.
        let h = simulate(11, 4000, 8, 4);
        write(&h, 100, 2, 2_000_000);
        read(&h, 101, 2, None);
        let started = Instant::now();
        let err = h.check().err();
        let took = started.elapsed();
        println!("anomaly {:?} in {took:?}", err.as_ref().map(|a| &a.reason));
        assert_eq!(err.map(|a| a.key), Some(2));
    }

    /// What becomes of a simulated operation.
    #[derive(Clone, Copy, PartialEq)]
    enum Fate {
        Ok,
        /// Timed out after taking effect.
        InfoApplied,
        /// Timed out without effect.
        InfoLost,
        Fail,
    }

    /// Simulates `n` operations by `clients` clients over `keys` keys against
    /// correct sequential registers, each applied at a random point inside its
    /// random interval, and records them in real-time order.
    fn simulate(seed: u64, n: usize, clients: u64, keys: u64) -> History {
        let mut rng = Rng(seed);
        // (invoke time, apply time, return time, client, key, op, fate)
        let mut ops = Vec::new();
        let mut clock = vec![0u64; clients as usize];
        let mut next_value = 1;
        for i in 0..n {
            let client = (i as u64) % clients;
            let c = client as usize;
            let start = clock[c] + rng.below(10);
            let apply = start + 1 + rng.below(20);
            let end = apply + 1 + rng.below(20);
            clock[c] = end + 1;
            let key = rng.below(keys);
            let op = match rng.below(10) {
                0..=3 => RegOp::Read,
                4..=6 => {
                    next_value += 1;
                    RegOp::Write(next_value)
                }
                _ => {
                    next_value += 1;
                    // Expect a recent value, so that some succeed.
                    RegOp::Cas {
                        expect: next_value.saturating_sub(1 + rng.below(4)),
                        new: next_value,
                    }
                }
            };
            let fate = match rng.below(40) {
                0 => Fate::InfoApplied,
                1 => Fate::InfoLost,
                2 => Fate::Fail,
                _ => Fate::Ok,
            };
            ops.push((start, apply, end, client, key, op, fate));
        }
        // Apply in apply-time order to find each return.
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| ops[i].1);
        let mut regs = vec![RegisterSpec(None); keys as usize];
        let mut rets = vec![RegRet::WriteOk; ops.len()];
        for i in order {
            let (_, _, _, _, key, op, fate) = ops[i];
            if matches!(fate, Fate::Ok | Fate::InfoApplied) {
                rets[i] = regs[key as usize].invoke(&op);
            }
        }
        // Replay the invocations and returns in time order (invocations
        // first at a tie, so ties count as overlapping).
        let mut events = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            events.push((op.0, 0, i));
            events.push((op.2, 1, i));
        }
        events.sort();
        let h = History::new();
        let mut tokens = vec![None; ops.len()];
        for (_, kind, i) in events {
            let (_, _, _, client, key, op, fate) = ops[i];
            if kind == 0 {
                tokens[i] = Some(h.invoke(client, key, op));
            } else if let Some(t) = tokens[i] {
                match fate {
                    Fate::Ok => h.ok(t, rets[i]),
                    Fate::InfoApplied | Fate::InfoLost => h.info(t),
                    Fate::Fail => h.fail(t),
                }
            }
        }
        h
    }

    #[test]
    fn a_large_correct_history_passes() {
        for seed in 0..3 {
            let h = simulate(seed, 2000, 8, 8);
            let started = Instant::now();
            let stats = h.check();
            let took = started.elapsed();
            println!("seed {seed}: 2000 ops, 8 keys, 8 clients: {stats:?} in {took:?}");
            assert!(stats.is_ok(), "{stats:?}");
        }
    }

    #[test]
    fn a_history_with_one_stale_read_is_caught() {
        // Small enough that the search for a linearization, which must fail
        // and so explores every order, stays short.
        let h = simulate(7, 200, 4, 4);
        // A stale read late in the history: a read of key 3 that starts after
        // a write of a fresh value to it returned, and sees none.
        write(&h, 100, 3, 1_000_000);
        read(&h, 101, 3, None);
        let started = Instant::now();
        let err = h.check().err();
        let took = started.elapsed();
        println!(
            "anomaly on key {:?} in {took:?}",
            err.as_ref().map(|a| a.key)
        );
        assert_eq!(err.map(|a| a.key), Some(3));
    }
}
