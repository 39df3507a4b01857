//! Replicated collections on real nodes: every collection written on one
//! node and read on a reader (a learner) on another, a reader without the
//! `read` grant refused, a writer restarted on its data dir keeping the
//! contents and versions, and a reader joining late catching up through a
//! snapshot.

mod common;

use std::sync::Arc;

use common::*;
use tessella_node::attestation::{Permission, ResourceKind};
use tessella_node::collections::{Cell, CollectionError, List, Map, Once, PriorityQueue, Set};
use tessella_node::groups::{Consistency, GroupError};
use tessella_node::{Node, TicketSource};

fn ticket(f: &Fixture, write: &[&str], read: &[&str]) -> TicketSource {
    let mut t = f.issuer.claims("template", &f.network, now(), 3600);
    for c in write {
        t = t.grant(ResourceKind::Collection, *c, Permission::Write);
    }
    for c in read {
        t = t.grant(ResourceKind::Collection, *c, Permission::Read);
    }
    TicketSource::IssuerGranting(f.issuer.clone(), 3600, Arc::new(t))
}

async fn node(
    f: &Fixture,
    t: TicketSource,
    dir: Option<std::path::PathBuf>,
    boot: Vec<std::net::SocketAddr>,
) -> Node {
    let mut o = f.options();
    o.ticket = t;
    o.bootstrap = boot;
    o.data_dir = dir;
    o.build().await.expect("node starts")
}

const ALL: [&str; 6] = ["m", "l", "s", "c", "o", "q"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collection_written_on_one_node_is_read_on_a_reader_elsewhere() {
    let f = Fixture::new("collections-all");
    let first = node(&f, ticket(&f, &ALL, &[]), None, Vec::new()).await;
    let boot = vec![first.local_addr()];
    let mut writers = vec![first];
    for _ in 1..3 {
        writers.push(node(&f, ticket(&f, &ALL, &[]), None, boot.clone()).await);
    }
    let reader = node(&f, ticket(&f, &[], &ALL), None, boot.clone()).await;
    let outsider = node(&f, ticket(&f, &[], &[]), None, boot.clone()).await;
    let mut all: Vec<&Node> = writers.iter().collect();
    all.push(&reader);
    all.push(&outsider);
    wait_until(|| full_mesh_catalogs(&all), "the cluster converges").await;

    // Map.
    let mut maps = Vec::new();
    for w in &writers {
        maps.push(
            Map::<String, u64>::writer(w.collections(), "m")
                .await
                .expect("map"),
        );
    }
    let rmap = Map::<String, u64>::reader(reader.collections(), "m")
        .await
        .expect("reader");
    let m = &maps[1];
    let (v1, old) = bounded("insert", m.insert(&"a".into(), &1))
        .await
        .expect("insert");
    assert_eq!(old, None);
    let (_, old) = m.insert(&"a".into(), &2).await.expect("insert");
    assert_eq!(old, Some(1));
    assert_eq!(
        m.compare_exchange(&"a".into(), Some(&1), Some(&3))
            .await
            .expect("cas"),
        Err(Some(2))
    );
    assert!(m
        .compare_exchange(&"a".into(), Some(&2), Some(&3))
        .await
        .expect("cas")
        .is_ok());
    m.extend([
        ("b".to_string(), 10),
        ("c".to_string(), 11),
        ("d".to_string(), 12),
    ])
    .await
    .expect("extend");
    assert_eq!(m.remove(&"b".into()).await.expect("remove").1, Some(10));
    let (_, n) = m
        .remove_many(["c".to_string(), "zz".to_string()])
        .await
        .expect("many");
    assert_eq!(n, 1);
    let (v, _) = m.insert(&"e".into(), &5).await.expect("insert");
    assert!(v > v1, "versions grow");
    // A write from a reader is refused here, not forwarded.
    assert!(matches!(
        rmap.insert(&"x".into(), &0).await,
        Err(CollectionError::Invalid(_))
    ));
    let mut w = rmap.when();
    bounded("the reader reaches the version", w.reaches(v))
        .await
        .expect("reaches");
    let page = rmap.page(None, 10, Consistency::Local).await.expect("page");
    let got: Vec<(String, u64)> = page.into_iter().map(|(k, e)| (k, e.value)).collect();
    assert_eq!(
        got,
        vec![("a".into(), 3), ("d".into(), 12), ("e".into(), 5)]
    );
    let e = rmap
        .entry(&"e".into(), Consistency::Linearizable)
        .await
        .expect("lin read");
    assert_eq!(e.map(|e| (e.value, e.version)), Some((5, v)));
    let (vc, n) = maps[2].clear().await.expect("clear");
    assert_eq!(n, 3);
    rmap.when().reaches(vc).await.expect("reaches");
    assert_eq!(rmap.len(Consistency::Local).await.expect("len"), 0);

    // List.
    let mut lists = Vec::new();
    for w in &writers {
        lists.push(
            List::<u32>::writer(w.collections(), "l")
                .await
                .expect("list"),
        );
    }
    let rlist = List::<u32>::reader(reader.collections(), "l")
        .await
        .expect("reader");
    let l = &lists[0];
    l.extend([1, 2, 3]).await.expect("extend");
    l.push_front(&0).await.expect("front");
    l.insert(2, &9).await.expect("insert at"); // 0 1 9 2 3
    assert_eq!(l.remove(1).await.expect("remove").1, 1); // 0 9 2 3
    l.swap(0, 3).await.expect("swap"); // 3 9 2 0
    assert_eq!(l.pop_back().await.expect("pop").1, Some(0)); // 3 9 2
    assert_eq!(l.pop_front().await.expect("pop").1, Some(3)); // 9 2
    l.set(1, &7).await.expect("set"); // 9 7
    l.push_back(&8).await.expect("push"); // 9 7 8
    let v = l.truncate(2).await.expect("truncate"); // 9 7
    assert!(matches!(
        l.insert(5, &1).await,
        Err(CollectionError::Invalid(_))
    ));
    rlist.when().reaches(v).await.expect("reaches");
    assert_eq!(
        rlist.range(0, 10, Consistency::Local).await.expect("range"),
        vec![9, 7]
    );
    assert_eq!(
        rlist.get(1, Consistency::Local).await.expect("get"),
        Some(7)
    );

    // Set.
    let mut sets = Vec::new();
    for w in &writers {
        sets.push(
            Set::<String>::writer(w.collections(), "s")
                .await
                .expect("set"),
        );
    }
    let rset = Set::<String>::reader(reader.collections(), "s")
        .await
        .expect("reader");
    let s = &sets[2];
    assert!(s.insert(&"x".into()).await.expect("insert").1);
    assert!(!s.insert(&"x".into()).await.expect("insert").1);
    s.extend(["y".to_string(), "z".to_string()])
        .await
        .expect("extend");
    let (v, removed) = s
        .remove_many(["y".to_string(), "q".to_string()])
        .await
        .expect("rm");
    assert_eq!(removed, 1);
    rset.when().reaches(v).await.expect("reaches");
    assert_eq!(
        rset.page(None, 10, Consistency::Local).await.expect("page"),
        vec!["x", "z"]
    );
    assert!(rset
        .contains(&"z".into(), Consistency::Local)
        .await
        .expect("contains"));

    // Cell and Once.
    let mut cells = Vec::new();
    let mut onces = Vec::new();
    for w in &writers {
        cells.push(
            Cell::<String>::writer(w.collections(), "c")
                .await
                .expect("cell"),
        );
        onces.push(
            Once::<u64>::writer(w.collections(), "o")
                .await
                .expect("once"),
        );
    }
    let rcell = Cell::<String>::reader(reader.collections(), "c")
        .await
        .expect("reader");
    let ronce = Once::<u64>::reader(reader.collections(), "o")
        .await
        .expect("reader");
    let waiting = tokio::spawn({
        let ronce = ronce.clone();
        async move { ronce.await_value().await }
    });
    cells[0].set(&"one".into()).await.expect("set");
    assert_eq!(
        cells[1]
            .compare_exchange(Some(&"two".into()), Some(&"x".into()))
            .await
            .expect("cas"),
        Err(Some("one".into()))
    );
    let v = cells[1]
        .compare_exchange(Some(&"one".into()), Some(&"two".into()))
        .await
        .expect("cas")
        .expect("swapped");
    rcell.when().reaches(v).await.expect("reaches");
    assert_eq!(rcell.get().await.expect("get"), Some("two".into()));
    assert!(onces[1].set(&7).await.expect("once").is_ok());
    assert_eq!(onces[2].set(&8).await.expect("once"), Err(7));
    assert_eq!(
        bounded("await_value", waiting)
            .await
            .expect("join")
            .expect("value"),
        7
    );

    // Priority queue, bounded to 3 on one writer.
    let mut queues = Vec::new();
    for w in &writers[..2] {
        queues.push(
            PriorityQueue::<i64, String, String>::writer(w.collections(), "q")
                .await
                .expect("q"),
        );
    }
    let bounded_q = PriorityQueue::<i64, String, String>::bounded(writers[2].collections(), "q", 3)
        .await
        .expect("bounded");
    let rq = PriorityQueue::<i64, String, String>::reader(reader.collections(), "q")
        .await
        .expect("reader");
    let q = &queues[0];
    q.insert(&"a".into(), 5, &"A".into()).await.expect("insert");
    q.insert(&"b".into(), -2, &"B".into())
        .await
        .expect("insert");
    q.insert(&"c".into(), 9, &"C".into()).await.expect("insert");
    assert!(q.update_priority(&"a".into(), 10).await.expect("prio").1);
    assert!(
        q.update_value(&"b".into(), &"BB".into())
            .await
            .expect("value")
            .1
    );
    let (_, evicted) = bounded_q
        .insert(&"d".into(), 0, &"D".into())
        .await
        .expect("insert");
    assert_eq!(evicted, vec![("b".to_string(), -2, "BB".to_string())]);
    assert_eq!(
        q.pop_max().await.expect("pop").1,
        Some(("a".into(), 10, "A".into()))
    );
    let (v, _) = q.insert(&"e".into(), 1, &"E".into()).await.expect("insert");
    rq.when().reaches(v).await.expect("reaches");
    let order: Vec<String> = rq
        .range(None, None, 10, false, Consistency::Local)
        .await
        .expect("range")
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(order, vec!["d", "e", "c"]);
    assert_eq!(
        rq.peek_max().await.expect("peek").map(|e| e.0),
        Some("c".into())
    );

    // No `read` grant: not a reader (the node's own ticket is checked, and
    // the leader admits learners only with the grant).
    match Map::<String, u64>::reader(outsider.collections(), "m").await {
        Err(CollectionError::Group(GroupError::NotPermitted(_))) => {}
        other => panic!(
            "an outsider opened a reader: {:?}",
            other.map(|m| m.name().to_string())
        ),
    }
    for n in writers.iter().chain([&reader, &outsider]) {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_restarted_on_its_data_dir_keeps_contents_and_versions() {
    let f = Fixture::new("collections-restart");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("n0");
    let t = || ticket(&f, &["m"], &[]);
    let n = node(&f, t(), Some(data.clone()), Vec::new()).await;
    let mut config = tessella_node::collections::Collections::group_config(
        "m",
        tessella_node::collections::CollectionRole::Writer,
    );
    config.voters = 1;
    config.snapshot_every = 50;
    let m = Map::<u64, String>::open(
        n.collections(),
        "m",
        tessella_node::collections::CollectionRole::Writer,
        config.clone(),
    )
    .await
    .expect("map");
    bounded("online", m.when().online()).await.expect("online");
    let mut last = 0;
    for i in 0..200u64 {
        last = m
            .insert(&(i % 120), &format!("v{i}"))
            .await
            .expect("insert")
            .0;
    }
    let before = m.page(None, 1000, Consistency::Local).await.expect("page");
    assert_eq!(before.len(), 120);
    assert!(m.status().snapshot > 0, "a snapshot was built");
    n.shutdown().await;

    let n = node(&f, t(), Some(data), Vec::new()).await;
    let m = Map::<u64, String>::open(
        n.collections(),
        "m",
        tessella_node::collections::CollectionRole::Writer,
        config,
    )
    .await
    .expect("map reopens");
    // The state is on disk: the applied version is there at open.
    assert!(m.version() > 0, "applied state read from disk at open");
    bounded("replayed tail", m.when().reaches(last))
        .await
        .expect("reaches");
    let after = m.page(None, 1000, Consistency::Local).await.expect("page");
    assert_eq!(after, before, "contents and versions survive the restart");
    bounded("online", m.when().online()).await.expect("online");
    let (v, old) = m
        .insert(&7, &"new".into())
        .await
        .expect("insert after restart");
    assert!(v > last);
    assert_eq!(old, Some("v127".into()));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_joining_late_catches_up_through_a_snapshot() {
    let f = Fixture::new("collections-late-reader");
    let w = node(&f, ticket(&f, &["m"], &[]), None, Vec::new()).await;
    let r = node(&f, ticket(&f, &[], &["m"]), None, vec![w.local_addr()]).await;
    wait_until(|| full_mesh_catalogs(&[&w, &r]), "the two nodes converge").await;
    let config = |role| {
        let mut c = tessella_node::collections::Collections::group_config("m", role);
        c.voters = 1;
        // Snapshots every 50 entries and no log kept behind them: a member
        // that joins later can only catch up from a snapshot.
        c.snapshot_every = 50;
        c.keep_logs = 0;
        c
    };
    use tessella_node::collections::CollectionRole::{Reader, Writer};
    let m = Map::<u64, String>::open(w.collections(), "m", Writer, config(Writer))
        .await
        .expect("map");
    bounded("online", m.when().online()).await.expect("online");
    let mut last = 0;
    for i in 0..300u64 {
        last = m
            .insert(&(i % 200), &format!("v{i}"))
            .await
            .expect("insert")
            .0;
    }
    wait_until(
        || m.status().purged > 0,
        "the writer compacts its log behind a snapshot",
    )
    .await;
    let purged = m.status().purged;

    let late = Map::<u64, String>::open(r.collections(), "m", Reader, config(Reader))
        .await
        .expect("reader");
    bounded("the late reader catches up", late.when().reaches(last))
        .await
        .expect("reaches");
    let status = late.status();
    assert!(
        status.snapshot >= purged,
        "the reader installed a snapshot covering the purged log ({purged}): {status:?}"
    );
    let want = m.page(None, 1000, Consistency::Local).await.expect("page");
    let got = late
        .page(None, 1000, Consistency::Local)
        .await
        .expect("page");
    assert_eq!(want.len(), 200);
    assert_eq!(got, want, "same entries, same versions");
    // Entries written after the snapshot reach it through the log.
    let (v, _) = m.insert(&1000, &"after".into()).await.expect("insert");
    bounded("the next entry", late.when().reaches(v))
        .await
        .expect("reaches");
    assert_eq!(
        late.get(&1000).await.expect("get"),
        Some("after".to_string())
    );
    r.shutdown().await;
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_replicate_and_a_late_reader_installs_a_large_snapshot() {
    // Group frames (appends of large entries, snapshot chunks) are bounded
    // by the groups' `max_frame` (4 MiB), not by the transport's 64 KiB
    // control frames: both here are well over 64 KiB.
    let f = Fixture::new("collections-large");
    let first = node(&f, ticket(&f, &["m"], &[]), None, Vec::new()).await;
    let boot = vec![first.local_addr()];
    let mut writers = vec![first];
    for _ in 1..3 {
        writers.push(node(&f, ticket(&f, &["m"], &[]), None, boot.clone()).await);
    }
    let refs: Vec<&Node> = writers.iter().collect();
    wait_until(|| full_mesh_catalogs(&refs), "the cluster converges").await;
    let config = |role| {
        let mut c = tessella_node::collections::Collections::group_config("m", role);
        c.snapshot_every = 10;
        c.keep_logs = 2;
        c
    };
    let mut maps = Vec::new();
    for w in &writers {
        maps.push(
            Map::<u64, String>::open(
                w.collections(),
                "m",
                tessella_node::collections::CollectionRole::Writer,
                config(tessella_node::collections::CollectionRole::Writer),
            )
            .await
            .expect("map"),
        );
    }
    wait_until(
        || maps.iter().all(|m| m.status().voters.len() == 3),
        "three voters",
    )
    .await;
    // 40 entries of 20 KiB values, written eight at a time: each log entry
    // and each append carries well over 64 KiB.
    let big = "x".repeat(20 << 10);
    let mut last = 0;
    for round in 0..5u64 {
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let (m, v) = (maps[0].clone(), big.clone());
            tasks.push(tokio::spawn(
                async move { m.insert(&(round * 8 + i), &v).await },
            ));
        }
        for t in tasks {
            let (v, _) = bounded("a large write", t)
                .await
                .expect("join")
                .expect("insert");
            last = last.max(v);
        }
    }
    for m in &maps {
        bounded("every voter applies", m.when().reaches(last))
            .await
            .expect("reaches");
    }
    while maps[0].status().purged == 0 {
        let v = bounded("a write", maps[0].insert(&0, &big))
            .await
            .expect("insert")
            .0;
        last = last.max(v);
    }
    let reader = node(&f, ticket(&f, &[], &["m"]), None, boot.clone()).await;
    let mut refs: Vec<&Node> = writers.iter().collect();
    refs.push(&reader);
    wait_until(|| full_mesh_catalogs(&refs), "the reader is known").await;
    let r = Map::<u64, String>::open(
        reader.collections(),
        "m",
        tessella_node::collections::CollectionRole::Reader,
        config(tessella_node::collections::CollectionRole::Reader),
    )
    .await
    .expect("reader");
    bounded("the reader catches up", r.when().reaches(last))
        .await
        .expect("reaches");
    assert!(r.status().snapshot > 0, "the reader installed a snapshot");
    assert_eq!(r.len(Consistency::Local).await.expect("len"), 40);
    assert_eq!(r.get(&39).await.expect("get"), Some(big));
    for n in writers.iter().chain([&reader]) {
        n.shutdown().await;
    }
}
