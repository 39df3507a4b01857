//! Node-level figures, printed, never asserted:
//!
//! 1. connection set-up (QUIC + RA-TLS handshake + ticket admission) p50/p99
//!    with cold and cached verdicts, beside plain quinn handshakes (mutual
//!    and server-auth-only, until both sides are established) in the same
//!    run;
//! 2. discovery convergence for 3, 10 and 30 in-process nodes given one
//!    bootstrap address (time until every catalog holds every other node),
//!    and failures among repeated 3-node formations;
//! 3. how fast readiness signals fire: delay from a catalog change to the
//!    subscriber's event;
//! 4. resident memory of an idle single-node `tessella-node dev` process;
//! 5. discovery at size, default intervals (probe period 1 s): 60 and 200
//!    in-process nodes from one bootstrap address: time until every catalog
//!    is complete, connections per node, resident memory per node, and the
//!    CPU the whole process burns while the network idles.
//!
//! Run: `cargo bench -p tessella-node --bench cluster`
//! (`TESSELLA_BENCH_FORMATIONS` (default 100), `TESSELLA_BENCH_CONNECTS` (40);
//! `TESSELLA_BENCH_ONLY=setup` stops after the connection set-up figures).
//! Targets: 3-node formation p50 <= 30 ms with zero failures, 10 nodes within
//! 1 s, 60 within 3 s, 200 converge; at 60 nodes at most 12 connections per
//! node, at most 3 MB per node, idle CPU of the process at most 0.06 cores;
//! events within 10 ms, idle RSS <= 15 MB.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessella_node::discovery::CatalogEvent;
use tessella_node::wire::CloseCode;
use tessella_node::{Network, Node};
use tessella_tests::kit::Fixture;

/// Bench nodes: the test kit's fixture (one dev PKI, issuer, policy,
/// and a data dir per node; sockets not wrapped by the fault plan), gossip
/// every 100 ms.
struct Dev {
    fixture: Fixture,
}

impl Dev {
    fn new() -> Dev {
        Dev {
            fixture: Fixture::new("bench"),
        }
    }

    async fn node(&self, bootstrap: Vec<SocketAddr>) -> Node {
        self.node_every(bootstrap, Duration::from_millis(100)).await
    }

    /// A bare transport built as the nodes' are.
    async fn transport(&self) -> Network {
        let mut opts = self.fixture.options();
        opts.faults = None;
        opts.transport().await.expect("transport")
    }

    async fn node_every(&self, bootstrap: Vec<SocketAddr>, interval: Duration) -> Node {
        let mut opts = self.fixture.options();
        // A node as deployed: its socket not wrapped by the fault plan.
        opts.faults = None;
        opts.bootstrap = bootstrap;
        opts.gossip_interval = interval;
        // The node's defaults where the kit shortens them for tests: record
        // lifetime and the transport's sweep period.
        opts.peer_ttl = Duration::from_secs(3600);
        opts.sweep_interval = Duration::from_millis(250);
        opts.build().await.expect("node")
    }
}

/// One figure for scripts: `BENCH {"bench":..,"figure":..,"value":..,"unit":..}`.
fn bench_line(figure: &str, value: f64, unit: &str) {
    println!(
        "BENCH {{\"bench\": \"cluster\", \"figure\": \"{figure}\", \"value\": {value:.3}, \"unit\": \"{unit}\"}}"
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Time until every node's catalog holds all others, or None after `limit`.
async fn converge(dev: &Dev, n: usize, limit: Duration) -> (Option<Duration>, Vec<Node>) {
    converge_every(dev, n, limit, Duration::from_millis(100)).await
}

async fn converge_every(
    dev: &Dev,
    n: usize,
    limit: Duration,
    interval: Duration,
) -> (Option<Duration>, Vec<Node>) {
    let start = Instant::now();
    let first = dev.node_every(vec![], interval).await;
    let addr = first.local_addr();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(dev.node_every(vec![addr], interval).await);
    }
    loop {
        if nodes.iter().all(|x| x.catalog().len() == n - 1) {
            return (Some(start.elapsed()), nodes);
        }
        if start.elapsed() > limit {
            return (None, nodes);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn stop(nodes: Vec<Node>) {
    let nodes: Vec<Arc<Node>> = nodes.into_iter().map(Arc::new).collect();
    let tasks: Vec<_> = nodes
        .iter()
        .map(|n| {
            let n = n.clone();
            tokio::spawn(async move { n.shutdown().await })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Close the session between `client` and `server` and wait until both
/// sides have let go of it.
async fn disconnect(client: &Network, server: &Network) {
    client.close_peer(&server.node_id(), CloseCode::Normal, "bench");
    let t = Instant::now();
    while !(client.connected().is_empty() && server.connected().is_empty()) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "session never closed"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Connection set-up (handshake and admission) on bare transports, so no
/// subsystem re-dials or adds work: fresh clients (cold verdicts on both
/// sides), then a client reconnecting after a closed session (cached
/// verdicts and tickets) interleaved with plain quinn, mutual and
/// server-auth-only, so drift hits them alike.
async fn connection_setup(dev: &Dev, iters: usize) {
    let server = dev.transport().await;
    let addr = server.local_addr();
    let mut cold = Vec::new();
    for _ in 0..iters {
        // A fresh client: its certificate is new to the server (cold).
        let fresh = dev.transport().await;
        let t = Instant::now();
        fresh.connect(addr).await.expect("connect");
        cold.push(t.elapsed().as_secs_f64() * 1e6);
        disconnect(&fresh, &server).await;
        fresh.shutdown().await;
    }
    let client = dev.transport().await;
    client.connect(addr).await.expect("connect");
    disconnect(&client, &server).await;
    let (mutual, one_way) = (PlainQuinn::new(true), PlainQuinn::new(false));
    let (mut cached, mut plain_mutual, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iters {
        let t = Instant::now();
        client.connect(addr).await.expect("reconnect");
        cached.push(t.elapsed().as_secs_f64() * 1e6);
        disconnect(&client, &server).await;
        plain_mutual.push(mutual.connect().await);
        plain.push(one_way.connect().await);
    }
    client.shutdown().await;
    server.shutdown().await;
    mutual.stop().await;
    one_way.stop().await;
    println!("connection set-up (handshake + admission), {iters} each, same run");
    let row = |name: &str, key: &str, v: &mut [f64], note: &str| {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!("  {name:<20} p50 {p50:>7.0} us  p99 {p99:>7.0} us{note}");
        bench_line(&format!("setup_{key}_p50"), p50, "us");
        bench_line(&format!("setup_{key}_p99"), p99, "us");
        p50
    };
    row("cold verdicts", "cold", &mut cold, "");
    let cached_p50 = row("cached verdicts", "cached", &mut cached, "");
    let mutual_p50 = row(
        "plain quinn, mutual",
        "plain_quinn_mutual",
        &mut plain_mutual,
        "  (TLS 1.3, P-256 rcgen certs both ways, no admission)",
    );
    let plain_p50 = row(
        "plain quinn",
        "plain_quinn",
        &mut plain,
        "  (TLS 1.3, server auth only, no admission)",
    );
    println!(
        "  cached/plain mutual p50 {:.2}x (target <= 1.5x); cached/plain server-auth-only {:.2}x",
        cached_p50 / mutual_p50,
        cached_p50 / plain_p50
    );
    println!("  (RA-TLS handshakes alone beside plain ones: `cargo bench -p tessella-attestation --bench handshake`)");
    bench_line(
        "setup_cached_over_plain_mutual",
        cached_p50 / mutual_p50,
        "ratio",
    );
    bench_line("setup_cached_over_plain", cached_p50 / plain_p50, "ratio");
}

/// A plain quinn server with an ordinary certificate, and a client that
/// shows one too when `mutual`.
struct PlainQuinn {
    client: quinn::Endpoint,
    addr: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
    /// One message per connection the server has established.
    established: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>,
}

impl PlainQuinn {
    fn new(mutual: bool) -> PlainQuinn {
        let cert = rcgen::generate_simple_self_signed(vec!["plain".to_string()]).expect("cert");
        let client_cert =
            rcgen::generate_simple_self_signed(vec!["client".to_string()]).expect("cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13");
        let server_tls = if mutual {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client_cert.cert.der().clone()).expect("root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .expect("client verifier");
            server_tls.with_client_cert_verifier(verifier)
        } else {
            server_tls.with_no_client_auth()
        };
        let mut server_tls = server_tls
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server tls");
        server_tls.send_tls13_tickets = 0;
        server_tls.alpn_protocols = vec![b"plain".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).expect("root");
        let client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots);
        let mut client_tls = if mutual {
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
                client_cert.signing_key.serialize_der().into(),
            );
            client_tls
                .with_client_auth_cert(vec![client_cert.cert.der().clone()], key)
                .expect("client cert")
        } else {
            client_tls.with_no_client_auth()
        };
        client_tls.alpn_protocols = vec![b"plain".to_vec()];
        client_tls.resumption = rustls::client::Resumption::disabled();
        let server = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(
                quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).expect("quic"),
            )),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .expect("server");
        let addr = server.local_addr().expect("addr");
        let (tx, established) = tokio::sync::mpsc::unbounded_channel();
        let acceptor = tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        let _ = tx.send(());
                        let _ = conn.closed().await;
                    }
                });
            }
        });
        let mut client =
            quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("client");
        client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).expect("quic"),
        )));
        PlainQuinn {
            client,
            addr,
            acceptor,
            established: tokio::sync::Mutex::new(established),
        }
    }

    /// One handshake, in microseconds until both sides have established
    /// the connection (as an admitted session is on both sides).
    async fn connect(&self) -> f64 {
        let mut established = self.established.lock().await;
        let t = Instant::now();
        let conn = self
            .client
            .connect(self.addr, "plain")
            .expect("connect")
            .await
            .expect("handshake");
        established.recv().await.expect("server established");
        let us = t.elapsed().as_secs_f64() * 1e6;
        conn.close(0u32.into(), b"done");
        us
    }

    async fn stop(self) {
        self.client.wait_idle().await;
        self.acceptor.abort();
    }
}

async fn event_latency(dev: &Dev) {
    let a = dev.node(vec![]).await;
    let mut events = a.subscribe();
    let b = dev.node(vec![a.local_addr()]).await;
    let started = Instant::now();
    let mut first_event = None;
    while first_event.is_none() && started.elapsed() < Duration::from_secs(5) {
        if let Ok(Ok(CatalogEvent::Discovered(_))) =
            tokio::time::timeout(Duration::from_millis(50), events.recv()).await
        {
            first_event = Some(started.elapsed());
        }
    }
    println!(
        "discovery event after a node starts with the other as bootstrap: {:?} (includes handshake and first exchange)",
        first_event
    );
    if let Some(t) = first_event {
        bench_line("discovery_event_ms", t.as_secs_f64() * 1e3, "ms");
    }
    stop(vec![a, b]).await;
}

/// This process's resident memory (KiB) and CPU time (seconds).
fn self_usage() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (rss, (ticks(11) + ticks(12)) / 100.0)
}

/// Discovery at size with default intervals.
async fn at_size(dev: &Dev, n: usize, idle: bool) {
    // What the process burns with no node at all (earlier sections' leftovers).
    let (_, c0) = self_usage();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss0, c1) = self_usage();
    println!("  baseline before starting: {:.3} cores", (c1 - c0) / 3.0);
    bench_line(
        &format!("baseline_cpu_before_{n}_nodes_cores"),
        (c1 - c0) / 3.0,
        "cores",
    );
    let (t, nodes) = converge_every(dev, n, Duration::from_secs(120), Duration::from_secs(1)).await;
    let conns: Vec<usize> = nodes.iter().map(|x| x.connected().len()).collect();
    let active: Vec<usize> = nodes
        .iter()
        .map(|x| x.discovery().views().0.len())
        .collect();
    println!(
        "  {n} nodes (probe period 1 s): converged {t:?} from the first start (target 60 in 3 s); \
         connections per node mean {:.1} max {}; active view max {}",
        conns.iter().sum::<usize>() as f64 / n as f64,
        conns.iter().max().unwrap_or(&0),
        active.iter().max().unwrap_or(&0)
    );
    bench_line(
        &format!("mean_connections_{n}_nodes_at_convergence"),
        conns.iter().sum::<usize>() as f64 / n as f64,
        "connections",
    );
    bench_line(
        &format!("max_connections_{n}_nodes_at_convergence"),
        *conns.iter().max().unwrap_or(&0) as f64,
        "connections",
    );
    bench_line(
        &format!("max_active_view_{n}_nodes"),
        *active.iter().max().unwrap_or(&0) as f64,
        "peers",
    );
    if let Some(t) = t {
        bench_line(
            &format!("converge_{n}_nodes_default_ms"),
            t.as_secs_f64() * 1e3,
            "ms",
        );
    }
    if idle {
        // Let joins settle, then watch the process idle.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let conns: Vec<usize> = nodes.iter().map(|x| x.connected().len()).collect();
        let (rss1, cpu0) = self_usage();
        let window = Duration::from_secs(20);
        tokio::time::sleep(window).await;
        let (_, cpu1) = self_usage();
        let cores = (cpu1 - cpu0) / window.as_secs_f64();
        let per_node_mb = (rss1 - rss0) / 1024.0 / n as f64;
        println!(
            "    after settling: connections per node max {} (target <= 12); RSS {:.2} MB per node (target <= 3); \
             idle CPU of the process {:.3} cores (target <= 0.06)",
            conns.iter().max().unwrap_or(&0),
            per_node_mb,
            cores
        );
        bench_line(
            &format!("max_connections_{n}_nodes"),
            *conns.iter().max().unwrap_or(&0) as f64,
            "connections",
        );
        bench_line(&format!("rss_per_node_{n}_nodes_mb"), per_node_mb, "MB");
        bench_line(&format!("idle_cpu_{n}_nodes_cores"), cores, "cores");
    }
    stop(nodes).await;
}

fn idle_rss() {
    let exe = env!("CARGO_BIN_EXE_tessella-node");
    let dir = std::env::temp_dir().join(format!("tessella-bench-rss-{}", std::process::id()));
    let child = std::process::Command::new(exe)
        .args(["dev", "--nodes", "1", "--data-dir"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        println!("idle RSS: could not start {exe}");
        return;
    };
    std::thread::sleep(Duration::from_secs(3));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: unknown");
    println!("idle `tessella-node dev --nodes 1` process (node + admin API), after 3 s: {rss} (target <= 15 MB)");
    if let Some(kb) = rss
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<f64>().ok())
    {
        bench_line("idle_rss_mb", kb / 1024.0, "MB");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let formations = env_usize("TESSELLA_BENCH_FORMATIONS", 100);
    let connects = env_usize("TESSELLA_BENCH_CONNECTS", 40);
    rt.block_on(async {
        let dev = Dev::new();
        connection_setup(&dev, connects).await;
        if std::env::var("TESSELLA_BENCH_ONLY").as_deref() == Ok("setup") {
            return;
        }
        println!();
        println!("discovery convergence from one bootstrap address (gossip every 100 ms)");
        for n in [3usize, 10, 30, 60] {
            let (t, nodes) = converge(&dev, n, Duration::from_secs(30)).await;
            println!("  {n:>2} nodes: {t:?} after the last node started (target: 10 in 1 s, 30 in 3 s)");
            if let Some(t) = t {
                bench_line(&format!("converge_{n}_nodes_ms"), t.as_secs_f64() * 1e3, "ms");
            }
            stop(nodes).await;
        }
        let mut failed = 0;
        let mut times = Vec::new();
        for _ in 0..formations {
            let (t, nodes) = converge(&dev, 3, Duration::from_secs(10)).await;
            match t {
                Some(t) => times.push(t.as_secs_f64() * 1e3),
                None => failed += 1,
            }
            stop(nodes).await;
        }
        if !times.is_empty() {
            println!(
                "  {formations} x 3-node formations: {failed} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                pct(&mut times.clone(), 0.5),
                pct(&mut times.clone(), 0.99),
                pct(&mut times.clone(), 1.0)
            );
            bench_line("formation_3_nodes_p50_ms", pct(&mut times, 0.5), "ms");
            bench_line("formation_3_nodes_p99_ms", pct(&mut times, 0.99), "ms");
            bench_line("formation_3_nodes_max_ms", pct(&mut times, 1.0), "ms");
        }
        bench_line("formations_failed", failed as f64, "count");
        println!();
        event_latency(&dev).await;
        println!();
        println!("discovery at size, default intervals");
        let sizes: Vec<usize> = std::env::var("TESSELLA_BENCH_SIZES")
            .ok()
            .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![60, 200]);
        for n in sizes {
            at_size(&dev, n, n <= 60).await;
        }
    });
    idle_rss();
}
