//! Replicated collection figures (`tessella_node::collections`), printed,
//! never asserted. One run measures, each figure on its own
//! `BENCH {"bench": "collections", "figure": .., "value": .., "unit": ..}`
//! line:
//!
//! 1. library writes: `Map<u64, String>::insert` of distinct keys (16-byte
//!    values) at the leader of a 3-voter map, from 1 and from 64 concurrent
//!    writer tasks, a fixed count of inserts per level: inserts/s and
//!    per-insert latency p50/p99; on durable nodes (data dirs: redb, fsync
//!    with group commit) and, as the baseline, on in-memory nodes (no data
//!    dir); plus 64 tasks of local reads (`get`) on the durable leader;
//! 2. HTTP: the admin API's key-value routes on the durable cluster's
//!    declared map `kv` (3 voters), 64 keep-alive HTTP/1.1 clients (a
//!    minimal client over tokio `TcpStream`, in this process) talking to
//!    the map leader's admin listener with an admin JWT:
//!    `PUT /v1/collections/kv/items/{key}` of distinct keys (writes/s,
//!    p50/p99), then `GET ...?consistency=local` of those keys (reads/s,
//!    p50/p99); the library figures of section 1 are the baseline;
//! 3. restart: a single node (one voter) fills a map with
//!    `TESSELLA_BENCH_RESTART_ENTRIES` entries (`extend` in chunks of
//!    1000; snapshots every 250 log entries, 100 kept behind, so the
//!    restart also meets a stored snapshot and a purged log) and shuts
//!    down; then a child process (this binary re-executed) starts a node
//!    on that data dir and is timed from `Node::start` until the map is
//!    open, answers a local read with every entry, and is online
//!    (`when().online()`); its RSS (`VmRSS`, and the peak `VmHWM`) after
//!    the restart. The same for a
//!    1000-entry map is the baseline;
//! 4. snapshot install: a 3-voter map (`snapshot_every` 50, `keep_logs` 10)
//!    takes `TESSELLA_BENCH_SNAPSHOT_ENTRIES` distinct entries (`extend` in
//!    chunks of 250) and overwrites until the leader has purged its log;
//!    then a 4th node opens the map as a reader (a learner) and is timed
//!    from the open call until its replica holds every entry. The reader
//!    installed a snapshot when its snapshot index reached at least the
//!    leader's purge index (the entries before it are gone from every log);
//!    the figures say which happened.
//!
//! Run: `cargo bench -p tessella-node --bench collections`. Knobs:
//! `TESSELLA_BENCH_INSERTS_1` (default 2000) inserts with 1 writer,
//! `TESSELLA_BENCH_INSERTS_64` (default 64000) inserts with 64 writers,
//! `TESSELLA_BENCH_LOCAL_READS` (default 200000) library local reads,
//! `TESSELLA_BENCH_HTTP_WRITES` (default 32000) and
//! `TESSELLA_BENCH_HTTP_READS` (default 128000) HTTP requests,
//! `TESSELLA_BENCH_RESTART_ENTRIES` (default 1000000, 0 skips section 3),
//! `TESSELLA_BENCH_SNAPSHOT_ENTRIES` (default 100000, 0 skips section 4);
//! `RUST_LOG` (e.g. `tessella_node::groups=info`) logs to stderr.
//! Targets (printed beside the figures): library at 64 writers >= 100000
//! inserts/s, HTTP >= 20000 writes/s and >= 50000 local reads/s, restart
//! ready within 2 s. Everything (nodes, clients) shares one process and its
//! cores, except the restarted node of section 3.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessella_node::attestation::{Permission, ResourceKind};
use tessella_node::collections::{
    config::KvMap, CollectionDecl, CollectionKind, CollectionRole, Collections, Consistency, Map,
};
use tessella_node::groups::GroupConfig;
use tessella_node::{Node, TicketSource};
use tessella_tests::kit::{full_mesh_catalogs, now, wait_until, Fixture};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The fixture's network name (the child of section 3 derives the same dev
/// PKI from it).
const NETWORK: &str = "bench-collections";
/// Section 1's map.
const MAP: &str = "bench";
/// Section 2's declared map.
const KV: &str = "kv";
/// Section 3's map.
const BIG: &str = "big";
/// Section 4's map.
const SNAP: &str = "snap";
/// Every value: 16 bytes.
fn value(i: u64) -> String {
    format!("value-{i:010}")
}

/// Target: library inserts/s at 64 writers.
const TARGET_LIB: f64 = 100_000.0;
/// Target: HTTP writes/s.
const TARGET_HTTP_WRITES: f64 = 20_000.0;
/// Target: HTTP local reads/s.
const TARGET_HTTP_READS: f64 = 50_000.0;
/// Target: restart until ready, ms.
const TARGET_RESTART_MS: f64 = 2000.0;

/// Inserts per writer task before a level is measured.
const WARMUP_PER_TASK: u64 = 20;
/// Section 3: entries per `extend`.
const RESTART_CHUNK: u64 = 1000;
/// Section 3: concurrent `extend` tasks.
const RESTART_TASKS: usize = 4;
/// Section 3: snapshot after this many log entries.
const RESTART_SNAPSHOT_EVERY: u64 = 250;
/// Section 3: log entries kept behind a snapshot.
const RESTART_KEEP_LOGS: u64 = 100;
/// Section 3: the baseline restart's entries.
const RESTART_BASELINE: u64 = 1000;
/// Section 3: the child's environment variables (data dir, expected entries).
const CHILD_DIR: &str = "TESSELLA_BENCH_RESTART_CHILD_DIR";
const CHILD_EXPECT: &str = "TESSELLA_BENCH_RESTART_CHILD_EXPECT";
/// Section 4: entries per `extend`.
const SNAP_CHUNK: u64 = 250;
/// Section 4: concurrent `extend` tasks.
const SNAP_TASKS: usize = 8;
/// Section 4: snapshot after this many log entries, and keep this many.
const SNAP_EVERY: u64 = 50;
const SNAP_KEEP: u64 = 10;
/// Section 4: longest wait for the leader's purge, and for the reader.
const PURGE_LIMIT: Duration = Duration::from_secs(120);
const INSTALL_LIMIT: Duration = Duration::from_secs(180);
/// Section 4: how often the reader is polled.
const FINE_POLL: Duration = Duration::from_millis(5);

/// One figure for scripts.
fn bench_line(figure: &str, value: f64, unit: &str) {
    bench_line_with(figure, value, unit, &[]);
}

/// [`bench_line`] with extra integer fields (the parameters of the run).
fn bench_line_with(figure: &str, value: f64, unit: &str, extra: &[(&str, u64)]) {
    let extra: String = extra
        .iter()
        .map(|(k, v)| format!(", \"{k}\": {v}"))
        .collect();
    println!(
        "BENCH {{\"bench\": \"collections\", \"figure\": \"{figure}\", \"value\": {value:.3}, \"unit\": \"{unit}\"{extra}}}"
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}: {v:?} is not a count; using {default}");
            default
        }),
        Err(_) => default,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What one load level did: successes, errors, rate, latency in ms.
struct Load {
    ok: u64,
    errors: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Load {
    /// Print and emit `label`'s figures (`unit`: what one success is).
    fn report(&self, label: &str, what: &str, unit: &str, extra: &[(&str, u64)]) {
        println!(
            "  {what}: {:>8.0} {unit}  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} done, {} errors)",
            self.per_sec, self.p50_ms, self.p99_ms, self.ok, self.errors
        );
        bench_line_with(&format!("{label}_per_s"), self.per_sec, unit, extra);
        bench_line_with(&format!("{label}_p50_ms"), self.p50_ms, "ms", extra);
        bench_line_with(&format!("{label}_p99_ms"), self.p99_ms, "ms", extra);
        if self.errors > 0 {
            bench_line_with(
                &format!("{label}_errors"),
                self.errors as f64,
                "count",
                extra,
            );
        }
    }
}

/// `tasks` tasks running `op(i)` for every `i` in `from..from + count`
/// (shared counter), timed.
async fn run_load<F, Fut>(tasks: usize, from: u64, count: u64, op: F) -> Load
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(from));
    let end = from + count;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return (lat, errors);
                    }
                    let t0 = Instant::now();
                    if op(t, i).await {
                        lat.push(ms(t0.elapsed()));
                    } else {
                        errors += 1;
                    }
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.await.expect("load task");
        lat.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    Load {
        ok: lat.len() as u64,
        errors,
        per_sec: lat.len() as f64 / secs,
        p50_ms: pct(&mut lat, 0.5),
        p99_ms: pct(&mut lat, 0.99),
    }
}

/// A ticket granting `write` on `write` and `read` on `read` (collections).
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

/// An admin JWT for the fixture's network (an operator, not a node).
fn admin_token(f: &Fixture) -> String {
    let sub = hex::encode(blake3::derive_key("tessella bench operator", b"admin"));
    let claims = f
        .issuer
        .claims(sub, &f.network, now(), 3600)
        .with_admin(true);
    f.issuer.issue(&claims).expect("admin ticket")
}

/// How a node of a cluster is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    /// A data dir: redb on disk, fsync (group commit).
    Durable,
    /// No data dir: redb in memory.
    Memory,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Durable => "durable",
            Store::Memory => "memory",
        }
    }
}

/// A node with `t`, on `dir` (or a fresh one; none with `Memory`), with the
/// admin API and `declared` maps when asked.
async fn node(
    f: &Fixture,
    t: TicketSource,
    store: Store,
    dir: Option<PathBuf>,
    boot: Vec<SocketAddr>,
    declared: &[&str],
) -> Node {
    let mut o = f.options();
    o.ticket = t;
    o.bootstrap = boot;
    o.faults = None;
    o.admin = !declared.is_empty();
    o.data_dir = match store {
        Store::Durable => Some(dir.unwrap_or_else(|| f.data_dir())),
        Store::Memory => None,
    };
    let mut spec = o.spec();
    spec.collections = declared
        .iter()
        .map(|name| CollectionDecl {
            name: (*name).to_string(),
            kind: CollectionKind::Map,
            voters: 3,
        })
        .collect();
    Node::start(spec).await.expect("node starts")
}

/// Three nodes whose tickets grant `write` on every bench map, catalogs
/// converged; the durable cluster serves `kv` over the admin API.
async fn cluster(f: &Fixture, store: Store) -> Vec<Node> {
    let declared: &[&str] = if store == Store::Durable { &[KV] } else { &[] };
    let t = || ticket(f, &[MAP, KV, SNAP], &[]);
    let first = node(f, t(), store, None, Vec::new(), declared).await;
    let boot = vec![first.local_addr()];
    let mut nodes = vec![first];
    for _ in 1..3 {
        nodes.push(node(f, t(), store, None, boot.clone(), declared).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(|| full_mesh_catalogs(&refs), "the cluster converges").await;
    nodes
}

async fn stop(nodes: Vec<Node>) {
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|n| tokio::spawn(async move { n.shutdown().await }))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Map `name` open as a writer on every node with `config`; the index of
/// the node that leads it once all three are voters and agree.
async fn open_everywhere(
    nodes: &[Node],
    name: &str,
    config: &GroupConfig,
) -> (Vec<Map<u64, String>>, usize) {
    let mut maps = Vec::new();
    for n in nodes {
        maps.push(
            Map::<u64, String>::open(
                n.collections(),
                name,
                CollectionRole::Writer,
                config.clone(),
            )
            .await
            .expect("open the map"),
        );
    }
    let leader = leader_of(nodes, |i| maps[i].status()).await;
    (maps, leader)
}

/// Waits until a leader with three voters is known to every member; its
/// index.
async fn leader_of(
    nodes: &[Node],
    status: impl Fn(usize) -> tessella_node::groups::GroupStatus,
) -> usize {
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id().to_string()).collect();
    let mut leader = None;
    wait_until(
        || {
            let all: Vec<_> = (0..nodes.len()).map(&status).collect();
            let l = all[0].leader.clone();
            leader = l.as_ref().and_then(|l| ids.iter().position(|id| id == l));
            leader.is_some()
                && all
                    .iter()
                    .all(|s| s.leader == l && s.voters.len() == 3 && !s.joint)
        },
        "a leader with three voters, known to every member",
    )
    .await;
    leader.expect("leader")
}

/// Section 1 on one store: (1-writer load, 64-writer load).
async fn library(f: &Fixture, store: Store, inserts_1: u64, inserts_64: u64) -> (Load, Load) {
    println!(
        "library writes: Map<u64, String>::insert at the leader, 3 voters, {} store",
        store.name()
    );
    let nodes = cluster(f, store).await;
    let config = Collections::group_config(MAP, CollectionRole::Writer);
    let (maps, leader) = open_everywhere(&nodes, MAP, &config).await;
    let m = maps[leader].clone();
    let mut key = 0u64;
    let mut out = Vec::new();
    for (writers, count) in [(1usize, inserts_1), (64, inserts_64)] {
        let insert = {
            let m = m.clone();
            move |_t: usize, i: u64| {
                let m = m.clone();
                async move { m.insert(&i, &value(i)).await.is_ok() }
            }
        };
        let warm = WARMUP_PER_TASK * writers as u64;
        run_load(writers, key, warm, insert.clone()).await;
        key += warm;
        let load = run_load(writers, key, count, insert).await;
        key += count;
        load.report(
            &format!("map_insert_{}_{writers}w", store.name()),
            &format!("{writers:>2} writers, {count} inserts"),
            "inserts/s",
            &[("writers", writers as u64), ("inserts", count)],
        );
        out.push(load);
    }
    let len = m.len(Consistency::Local).await.expect("len");
    println!("  the map holds {len} entries (of {key} inserted)");
    let (Some(w64), Some(w1)) = (out.pop(), out.pop()) else {
        unreachable!("two levels ran")
    };
    stop(nodes).await;
    (w1, w64)
}

/// A minimal keep-alive HTTP/1.1 client (Content-Length bodies only).
struct Http {
    conn: BufReader<TcpStream>,
    head: String,
    line: String,
}

impl Http {
    async fn connect(addr: SocketAddr, token: &str) -> std::io::Result<Http> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Http {
            conn: BufReader::new(s),
            head: format!("Host: {addr}\r\nAuthorization: Bearer {token}\r\n"),
            line: String::new(),
        })
    }

    /// One request: the status and the body.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let mut req = Vec::with_capacity(self.head.len() + 128 + body.len());
        write!(
            req,
            "{method} {path} HTTP/1.1\r\n{}Content-Length: {}\r\n",
            self.head,
            body.len()
        )?;
        if !body.is_empty() {
            req.extend_from_slice(b"Content-Type: application/json\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.conn.get_mut().write_all(&req).await?;
        self.line.clear();
        if self.conn.read_line(&mut self.line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", self.line)))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            if self.conn.read_line(&mut self.line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("bad content-length {v:?}")))?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad("chunked responses are not supported".into()));
                }
            }
        }
        let mut body = vec![0; length];
        self.conn.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// `clients` keep-alive connections to `addr`, each taking request numbers
/// from a shared counter over `from..from + count` and sending
/// `make(i)` = (method, path, body); a success is a 200.
async fn http_load(
    addr: SocketAddr,
    token: &str,
    clients: usize,
    from: u64,
    count: u64,
    make: impl Fn(u64) -> (&'static str, String, Vec<u8>) + Send + Sync + 'static,
) -> Load {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(
            Http::connect(addr, token)
                .await
                .expect("connect to the admin API"),
        );
    }
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(from));
    let end = from + count;
    let start = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let (next, make, token) = (next.clone(), make.clone(), token.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut first_error = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return (lat, errors, first_error);
                    }
                    let (method, path, body) = make(i);
                    let t0 = Instant::now();
                    match c.request(method, &path, &body).await {
                        Ok((200, _)) => lat.push(ms(t0.elapsed())),
                        Ok((status, body)) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| {
                                format!("{status}: {}", String::from_utf8_lossy(&body))
                            });
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("connection: {e}"));
                            match Http::connect(addr, &token).await {
                                Ok(fresh) => c.conn = fresh.conn,
                                Err(_) => return (lat, errors, first_error),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first = None;
    for h in handles {
        let (l, e, fe) = h.await.expect("client task");
        lat.extend(l);
        errors += e;
        first = first.or(fe);
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = first {
        println!("  first error: {e}");
    }
    Load {
        ok: lat.len() as u64,
        errors,
        per_sec: lat.len() as f64 / secs,
        p50_ms: pct(&mut lat, 0.5),
        p99_ms: pct(&mut lat, 0.99),
    }
}

/// The declared `kv` map of `n`, once open.
fn kv_of(n: &Node) -> Option<KvMap> {
    n.collections().declared().get(KV).flatten()
}

/// Sections 1 (local reads), 2 and 4 on the durable cluster.
async fn http_and_snapshot(
    f: &Fixture,
    lib_64: &Load,
    local_reads: u64,
    http_writes: u64,
    http_reads: u64,
    snapshot_entries: u64,
) {
    let nodes = cluster(f, Store::Durable).await;

    // Section 1, local reads through the library (the HTTP reads' baseline).
    println!("library local reads: Map::get, 64 tasks at the leader, durable store");
    let config = Collections::group_config(MAP, CollectionRole::Writer);
    let (maps, leader) = open_everywhere(&nodes, MAP, &config).await;
    let m = maps[leader].clone();
    let keys = 10_000u64;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        m.extend(chunk.iter().map(|&i| (i, value(i))))
            .await
            .expect("seed the map");
    }
    let get = {
        let m = m.clone();
        move |_t: usize, i: u64| {
            let m = m.clone();
            async move { matches!(m.get(&(i % keys)).await, Ok(Some(_))) }
        }
    };
    run_load(64, 0, 64 * WARMUP_PER_TASK, get.clone()).await;
    let lib_reads = run_load(64, 0, local_reads, get).await;
    lib_reads.report(
        "map_get_local_durable_64t",
        &format!("64 tasks, {local_reads} local reads"),
        "reads/s",
        &[("tasks", 64), ("reads", local_reads)],
    );

    // Section 2.
    println!("HTTP key-value API: map {KV} (3 voters, durable), 64 keep-alive clients at the map leader's admin API");
    wait_until(
        || nodes.iter().all(|n| kv_of(n).is_some()),
        "every node serves kv",
    )
    .await;
    let kvs: Vec<KvMap> = nodes.iter().map(|n| kv_of(n).expect("kv open")).collect();
    let kv_leader = leader_of(&nodes, |i| kvs[i].status()).await;
    let addr = nodes[kv_leader].admin_addr().expect("admin API");
    let token = admin_token(f);
    let put = |i: u64| {
        (
            "PUT",
            format!("/v1/collections/{KV}/items/key-{i}"),
            format!("{{\"n\":{i},\"v\":\"{}\"}}", value(i)).into_bytes(),
        )
    };
    http_load(addr, &token, 64, 0, 64 * WARMUP_PER_TASK, put).await;
    let warm = 64 * WARMUP_PER_TASK;
    let writes = http_load(addr, &token, 64, warm, http_writes, put).await;
    writes.report(
        "http_put_durable_64c",
        &format!("PUT, 64 clients, {http_writes} writes"),
        "writes/s",
        &[("clients", 64), ("writes", http_writes)],
    );
    let written = warm + http_writes;
    let get = move |i: u64| {
        (
            "GET",
            format!(
                "/v1/collections/{KV}/items/key-{}?consistency=local",
                i % written
            ),
            Vec::new(),
        )
    };
    http_load(addr, &token, 64, 0, 64 * WARMUP_PER_TASK, get).await;
    let reads = http_load(addr, &token, 64, 0, http_reads, get).await;
    reads.report(
        "http_get_local_durable_64c",
        &format!("GET local, 64 clients, {http_reads} reads"),
        "reads/s",
        &[("clients", 64), ("reads", http_reads)],
    );
    println!(
        "  HTTP writes {:.0}/s (target >= {TARGET_HTTP_WRITES:.0}; library at 64 writers {:.0}/s, x{:.2} of it)",
        writes.per_sec,
        lib_64.per_sec,
        writes.per_sec / lib_64.per_sec
    );
    println!(
        "  HTTP local reads {:.0}/s (target >= {TARGET_HTTP_READS:.0}; library local reads {:.0}/s, x{:.2} of it)",
        reads.per_sec,
        lib_reads.per_sec,
        reads.per_sec / lib_reads.per_sec
    );
    bench_line(
        "http_put_over_target",
        writes.per_sec / TARGET_HTTP_WRITES,
        "ratio",
    );
    bench_line(
        "http_put_over_library_64w",
        writes.per_sec / lib_64.per_sec,
        "ratio",
    );
    bench_line(
        "http_get_local_over_target",
        reads.per_sec / TARGET_HTTP_READS,
        "ratio",
    );
    bench_line(
        "http_get_local_over_library",
        reads.per_sec / lib_reads.per_sec,
        "ratio",
    );

    if snapshot_entries > 0 {
        println!();
        snapshot_install(f, &nodes, snapshot_entries).await;
    }
    stop(nodes).await;
}

/// Fill `m` with keys `0..entries` by `extend` chunks of `chunk` from
/// `tasks` tasks.
async fn fill(m: &Map<u64, String>, entries: u64, chunk: u64, tasks: usize) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (m, next) = (m.clone(), next.clone());
            tokio::spawn(async move {
                let mut last = 0;
                loop {
                    let from = next.fetch_add(chunk, Ordering::Relaxed);
                    if from >= entries {
                        return last;
                    }
                    let to = (from + chunk).min(entries);
                    last = last.max(
                        m.extend((from..to).map(|i| (i, value(i))))
                            .await
                            .expect("extend"),
                    );
                }
            })
        })
        .collect();
    let mut last = 0;
    for h in handles {
        last = last.max(h.await.expect("fill task"));
    }
    last
}

/// Section 4.
async fn snapshot_install(f: &Fixture, nodes: &[Node], entries: u64) {
    println!(
        "snapshot install: map {SNAP} (3 voters, durable) of {entries} entries, snapshot_every {SNAP_EVERY}, keep_logs {SNAP_KEEP}; a reader joins after the purge"
    );
    let params = [("entries", entries)];
    let config = GroupConfig {
        snapshot_every: SNAP_EVERY,
        keep_logs: SNAP_KEEP,
        ..Collections::group_config(SNAP, CollectionRole::Writer)
    };
    let (maps, leader) = open_everywhere(nodes, SNAP, &config).await;
    let m = maps[leader].clone();
    let t = Instant::now();
    fill(&m, entries, SNAP_CHUNK, SNAP_TASKS).await;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  filled in {secs:.2} s ({:.0} entries/s)",
        entries as f64 / secs
    );
    bench_line_with(
        "snapshot_fill_entries_per_s",
        entries as f64 / secs,
        "entries/s",
        &params,
    );
    // Overwrite (the entry count stays) until the leader purged its log.
    let t = Instant::now();
    let mut overwrites = 0u64;
    while m.status().purged == 0 && t.elapsed() < PURGE_LIMIT {
        let i = overwrites % entries.max(1);
        let _ = m.insert(&i, &value(i)).await;
        overwrites += 1;
    }
    let st = m.status();
    let len = m.len(Consistency::Local).await.expect("len");
    println!(
        "  leader: {len} entries, log index {}, applied {}, snapshot {}, purged {} ({overwrites} overwrites to get there)",
        st.last_log_index, st.applied, st.snapshot, st.purged
    );
    if st.purged == 0 {
        println!("  FAILED: the leader purged nothing within {PURGE_LIMIT:?}");
        bench_line_with("snapshot_failed", 1.0, "count", &params);
        return;
    }
    let purged_at_join = st.purged;
    let applied_at_join = st.applied;

    let boot = vec![nodes[(leader + 1) % nodes.len()].local_addr()];
    let late = node(f, ticket(f, &[], &[SNAP]), Store::Durable, None, boot, &[]).await;
    {
        let mut refs: Vec<&Node> = nodes.iter().collect();
        refs.push(&late);
        wait_until(|| full_mesh_catalogs(&refs), "the reader's node is known").await;
    }
    let reader_config = GroupConfig {
        snapshot_every: SNAP_EVERY,
        keep_logs: SNAP_KEEP,
        ..Collections::group_config(SNAP, CollectionRole::Reader)
    };
    let t0 = Instant::now();
    let reader = Map::<u64, String>::open(
        late.collections(),
        SNAP,
        CollectionRole::Reader,
        reader_config,
    )
    .await
    .expect("open the reader");
    let opened = t0.elapsed();
    let (mut first_snapshot, mut complete) = (None, None);
    let mut snapshot_index = 0;
    while t0.elapsed() < INSTALL_LIMIT {
        let s = reader.status();
        if first_snapshot.is_none() && s.snapshot > 0 {
            first_snapshot = Some(t0.elapsed());
            snapshot_index = s.snapshot;
        }
        if reader.version() >= applied_at_join
            && reader.len(Consistency::Local).await.unwrap_or(0) == len
        {
            complete = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(FINE_POLL).await;
    }
    let rs = reader.status();
    let installed = snapshot_index >= purged_at_join;
    println!(
        "  reader: open returned {:.1} ms, first snapshot (index {snapshot_index}) {}, all {len} entries {}; state {}, snapshot {}, purged {}, applied {}",
        ms(opened),
        first_snapshot.map_or("-".into(), |d| format!("{:.1} ms", ms(d))),
        complete.map_or("-".into(), |d| format!("{:.1} ms", ms(d))),
        rs.state,
        rs.snapshot,
        rs.purged,
        rs.applied
    );
    println!(
        "  the reader {} (leader purged up to {purged_at_join} before it joined; its first snapshot covers {snapshot_index})",
        if installed {
            "installed the leader's snapshot"
        } else {
            "did NOT install a snapshot covering the purged log"
        }
    );
    bench_line_with("snapshot_reader_open_ms", ms(opened), "ms", &params);
    bench_line_with(
        "snapshot_installed",
        if installed { 1.0 } else { 0.0 },
        "bool",
        &params,
    );
    if let Some(d) = first_snapshot {
        bench_line_with("snapshot_reader_first_snapshot_ms", ms(d), "ms", &params);
    }
    match complete {
        Some(d) => {
            println!("  snapshot install time: {:.1} ms for {len} entries", ms(d));
            bench_line_with("snapshot_install_ms", ms(d), "ms", &params);
        }
        None => {
            println!("  FAILED: the reader did not hold every entry within {INSTALL_LIMIT:?}");
            bench_line_with("snapshot_failed", 1.0, "count", &params);
        }
    }
    late.shutdown().await;
}

/// What the child of section 3 reports (one `RESTART` line of JSON).
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Restarted {
    entries: u64,
    node_started_ms: f64,
    map_open_ms: f64,
    reads_ms: f64,
    online_ms: f64,
    ready_ms: f64,
    version_at_open: u64,
    rss_before_kib: u64,
    rss_kib: u64,
    hwm_kib: u64,
    snapshot: u64,
    purged: u64,
    state: String,
}

/// `VmRSS` and `VmHWM` of this process, KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Section 3's map settings: one voter, frequent snapshots.
fn big_config() -> GroupConfig {
    GroupConfig {
        voters: 1,
        snapshot_every: RESTART_SNAPSHOT_EVERY,
        keep_logs: RESTART_KEEP_LOGS,
        ..Collections::group_config(BIG, CollectionRole::Writer)
    }
}

/// Section 3, in the parent: a single node fills map `big` with `entries`
/// on `dir`, then shuts down.
async fn prepare_restart(f: &Fixture, dir: &Path, entries: u64) -> Duration {
    let t = Instant::now();
    let n = node(
        f,
        ticket(f, &[BIG], &[]),
        Store::Durable,
        Some(dir.to_path_buf()),
        Vec::new(),
        &[],
    )
    .await;
    let m = Map::<u64, String>::open(n.collections(), BIG, CollectionRole::Writer, big_config())
        .await
        .expect("open the big map");
    m.when().online().await.expect("online");
    fill(&m, entries, RESTART_CHUNK, RESTART_TASKS).await;
    let len = m.len(Consistency::Local).await.expect("len");
    let st = m.status();
    println!(
        "  prepared {len} entries in {:.1} s: log index {}, snapshot {}, purged {}",
        t.elapsed().as_secs_f64(),
        st.last_log_index,
        st.snapshot,
        st.purged
    );
    n.shutdown().await;
    t.elapsed()
}

/// Section 3, in the child: restart the node on `dir` and time it.
async fn child_restart(dir: PathBuf, expect: u64) -> Restarted {
    let f = Fixture::new(NETWORK);
    let t = ticket(&f, &[BIG], &[]);
    let (rss_before, _) = rss();
    let t0 = Instant::now();
    let n = node(&f, t, Store::Durable, Some(dir), Vec::new(), &[]).await;
    let node_started = t0.elapsed();
    let m = Map::<u64, String>::open(n.collections(), BIG, CollectionRole::Writer, big_config())
        .await
        .expect("reopen the big map");
    let map_open = t0.elapsed();
    let version_at_open = m.version();
    let len = m.len(Consistency::Local).await.expect("local read");
    let probe = m.get(&(expect / 2)).await.expect("local get");
    assert_eq!(len, expect, "the restarted map holds every entry");
    assert!(expect == 0 || probe.is_some(), "a key reads back");
    let reads = t0.elapsed();
    m.when().online().await.expect("online");
    let online = t0.elapsed();
    let (rss_kib, hwm_kib) = rss();
    let st = m.status();
    let out = Restarted {
        entries: len,
        node_started_ms: ms(node_started),
        map_open_ms: ms(map_open),
        reads_ms: ms(reads),
        online_ms: ms(online),
        ready_ms: ms(reads.max(online)),
        version_at_open,
        rss_before_kib: rss_before,
        rss_kib,
        hwm_kib,
        snapshot: st.snapshot,
        purged: st.purged,
        state: st.state,
    };
    n.shutdown().await;
    out
}

/// Section 3, in the parent: restart `dir` in a child process.
fn restart_in_child(dir: &Path, expect: u64) -> Option<Restarted> {
    let exe = std::env::current_exe().expect("this bench's path");
    let out = std::process::Command::new(exe)
        .env(CHILD_DIR, dir)
        .env(CHILD_EXPECT, expect.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the restart child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESTART "))
        .and_then(|j| serde_json::from_str(j).ok());
    if parsed.is_none() {
        println!(
            "  FAILED: the restart child exited with {} and no report; its output: {stdout}",
            out.status
        );
    }
    parsed
}

/// Section 3.
async fn restart(f: &Fixture, entries: u64) {
    println!(
        "restart: one node (1 voter), map {BIG}; restarted in a child process on its data dir"
    );
    let dirs = tempfile::tempdir().expect("temp dir");
    for (label, count) in [("baseline", RESTART_BASELINE), ("full", entries)] {
        let dir = dirs.path().join(label);
        let prep = prepare_restart(f, &dir, count).await;
        let dir2 = dir.clone();
        let r = tokio::task::spawn_blocking(move || restart_in_child(&dir2, count))
            .await
            .expect("child task");
        let Some(r) = r else {
            bench_line_with(
                &format!("restart_{label}_failed"),
                1.0,
                "count",
                &[("entries", count)],
            );
            continue;
        };
        println!(
            "  {label}, {} entries (prepared in {:.1} s): node started {:.1} ms, map open {:.1} ms (version {} read from disk), reads served {:.1} ms, online {:.1} ms; ready {:.1} ms (target <= {TARGET_RESTART_MS:.0} ms)",
            r.entries,
            prep.as_secs_f64(),
            r.node_started_ms,
            r.map_open_ms,
            r.version_at_open,
            r.reads_ms,
            r.online_ms,
            r.ready_ms
        );
        println!(
            "  {label}: RSS {:.1} MiB after the restart (before Node::start {:.1} MiB, peak {:.1} MiB); state {}, snapshot {}, purged {}",
            r.rss_kib as f64 / 1024.0,
            r.rss_before_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0,
            r.state,
            r.snapshot,
            r.purged
        );
        let p = [("entries", r.entries)];
        bench_line_with(&format!("restart_{label}_ready_ms"), r.ready_ms, "ms", &p);
        bench_line_with(
            &format!("restart_{label}_node_started_ms"),
            r.node_started_ms,
            "ms",
            &p,
        );
        bench_line_with(
            &format!("restart_{label}_map_open_ms"),
            r.map_open_ms,
            "ms",
            &p,
        );
        bench_line_with(&format!("restart_{label}_reads_ms"), r.reads_ms, "ms", &p);
        bench_line_with(&format!("restart_{label}_online_ms"), r.online_ms, "ms", &p);
        bench_line_with(
            &format!("restart_{label}_rss_mib"),
            r.rss_kib as f64 / 1024.0,
            "MiB",
            &p,
        );
        bench_line_with(
            &format!("restart_{label}_peak_rss_mib"),
            r.hwm_kib as f64 / 1024.0,
            "MiB",
            &p,
        );
        bench_line_with(
            &format!("restart_{label}_prepare_s"),
            prep.as_secs_f64(),
            "s",
            &p,
        );
        if label == "full" {
            bench_line_with(
                "restart_over_target",
                r.ready_ms / TARGET_RESTART_MS,
                "ratio",
                &p,
            );
        }
    }
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let expect = env_u64(CHILD_EXPECT, 0);
        let r = rt.block_on(child_restart(PathBuf::from(dir), expect));
        println!(
            "RESTART {}",
            serde_json::to_string(&r).expect("encode the report")
        );
        return;
    }
    let inserts_1 = env_u64("TESSELLA_BENCH_INSERTS_1", 2000);
    let inserts_64 = env_u64("TESSELLA_BENCH_INSERTS_64", 64_000);
    let local_reads = env_u64("TESSELLA_BENCH_LOCAL_READS", 200_000);
    let http_writes = env_u64("TESSELLA_BENCH_HTTP_WRITES", 32_000);
    let http_reads = env_u64("TESSELLA_BENCH_HTTP_READS", 128_000);
    let restart_entries = env_u64("TESSELLA_BENCH_RESTART_ENTRIES", 1_000_000);
    let snapshot_entries = env_u64("TESSELLA_BENCH_SNAPSHOT_ENTRIES", 100_000);
    let started = Instant::now();
    rt.block_on(async {
        let fixture = Fixture::new(NETWORK);
        let (d1, d64) = library(&fixture, Store::Durable, inserts_1, inserts_64).await;
        println!();
        let (m1, m64) = library(&fixture, Store::Memory, inserts_1, inserts_64).await;
        println!();
        println!("durable beside the in-memory baseline (durable/in-memory)");
        for (writers, d, m) in [(1, &d1, &m1), (64, &d64, &m64)] {
            println!(
                "  {writers:>2} writers: {:>8.0} vs {:>8.0} inserts/s (x{:.2}); p50 {:.3} vs {:.3} ms",
                d.per_sec,
                m.per_sec,
                d.per_sec / m.per_sec,
                d.p50_ms,
                m.p50_ms
            );
            bench_line(
                &format!("map_insert_{writers}w_durable_over_memory"),
                d.per_sec / m.per_sec,
                "ratio",
            );
        }
        println!(
            "  64 writers durable: {:.0} inserts/s, target >= {TARGET_LIB:.0}: x{:.3} of target",
            d64.per_sec,
            d64.per_sec / TARGET_LIB
        );
        bench_line(
            "map_insert_64w_durable_over_target",
            d64.per_sec / TARGET_LIB,
            "ratio",
        );
        println!();
        http_and_snapshot(
            &fixture,
            &d64,
            local_reads,
            http_writes,
            http_reads,
            snapshot_entries,
        )
        .await;
        if restart_entries > 0 {
            println!();
            restart(&fixture, restart_entries).await;
        }
    });
    let wall = started.elapsed().as_secs_f64();
    println!();
    println!("wall time {wall:.1} s");
    bench_line("wall_s", wall, "s");
}
