//! The admin API of a real dev cluster (`DevCluster::start`, as
//! `tessella-node dev` runs it), spoken to over TCP with hand-written
//! HTTP/1.1: status and peers are right, `/v1` and `/metrics` need an admin
//! ticket (401 without one, 403 with a valid ticket that lacks the admin
//! permission), garbage collateral is refused with 400 and a JSON error.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, connected_ids, wait_until};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::Endpoint;
use serde_json::Value;
use tessella_attestation::clock::SystemClock;
use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::identity::NetworkId;
use tessella_attestation::ratls::{self, CertResolver, RatlsVerifier};
use tessella_attestation::{CollateralStore, Policy, TicketIssuer, TicketValidator, TrustedIssuer};
use tessella_node::admin::{NodeMode, NodeStatus, PeersResponse, Readiness};
use tessella_node::admission::ControlMsg;
use tessella_node::devnet::{dev_policy, DevCluster, DevOptions, DEV_TD_NAME};
use tessella_node::wire::{self, StreamFamily};

const NETWORK: &str = "admin-test";
const SEED: &str = "admin-test-seed";

/// An HTTP response.
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `{"error": {"code", "message"}}` body's code.
    fn error_code(&self) -> String {
        let body = self.json();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "error bodies carry a message: {body}");
        body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {body}"))
            .to_string()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Response {
    http_with(addr, method, path, token, &[], body).await
}

/// [`http`] with extra headers.
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let what = format!("{method} {path}");
    let raw = bounded(
        &what,
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect to the admin API");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            stream.write_all(&bytes).expect("send request");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).expect("read response");
            raw
        }),
    )
    .await
    .expect("http task");
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..eol]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A valid ticket of the cluster's issuer without the admin permission: the
/// one node 0 presents to peers. The test stands up an RA-TLS listener with
/// the dev cluster's (deterministic) PKI and TD, has node 0 dial it, and
/// reads node 0's Hello.
async fn node_ticket(cluster: &DevCluster) -> String {
    let pki = Arc::new(DevPki::generate(SEED.as_bytes()).expect("the cluster's dev PKI"));
    let network = NetworkId::from_name(NETWORK);
    let td = DevTd::named(DEV_TD_NAME);
    let identity = ratls::issue(
        &DevQuoteProvider::new(pki.clone(), td),
        &network,
        common::now(),
        3600,
    )
    .expect("listener cert");
    let store = Arc::new(CollateralStore::new());
    store.insert(pki.collateral().clone());
    let verifier = RatlsVerifier::new(
        pki.verifier(),
        store,
        Arc::new(Policy::new(dev_policy())),
        network,
        Arc::new(SystemClock),
    );
    let mut tls = ratls::server_config(CertResolver::new(identity).expect("resolver"), verifier)
        .expect("server tls");
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let endpoint = Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(tls).expect("quic server"),
        )),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .expect("bind listener");
    let addr = endpoint.local_addr().expect("addr");
    let node = cluster.nodes[0].node.network().clone();
    let dial = tokio::spawn(async move { node.connect(addr).await });
    let conn = bounded("node 0 dialling", async {
        endpoint
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake with node 0")
    })
    .await;
    let (_send, mut recv) = bounded("node 0's control stream", conn.accept_bi())
        .await
        .expect("control stream");
    let header = wire::read_header(&mut recv).await.expect("header");
    assert_eq!(header.family, StreamFamily::Control);
    let hello: Option<ControlMsg> = wire::read_frame(&mut recv, wire::DEFAULT_MAX_FRAME)
        .await
        .expect("node 0's Hello");
    let ControlMsg::V1(hello) = hello.expect("a Hello");
    conn.close(0u32.into(), b"done");
    let _ = bounded("node 0's dial to end", dial).await;
    endpoint.close(0u32.into(), b"done");
    hello.ticket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_of_a_dev_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = DevCluster::start(DevOptions {
        nodes: 3,
        network: NETWORK.into(),
        data_dir: dir.path().join("dev"),
        gossip_interval: common::GOSSIP,
        seed: SEED.into(),
        ..DevOptions::default()
    })
    .await
    .expect("dev cluster starts");
    let token = cluster.admin_token.clone();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dev/admin.jwt")).expect("admin.jwt"),
        token,
        "the admin token is written to the data dir"
    );
    let nodes: Vec<&tessella_node::Node> = cluster.nodes.iter().map(|n| &n.node).collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id().to_string()).collect();
    wait_until(
        || {
            nodes
                .iter()
                .all(|n| connected_ids(n).len() == 2 && common::catalog_ids(n).len() == 2)
        },
        "every dev node is connected to and knows the two others",
    )
    .await;
    let admin = cluster.nodes[0].admin_addr;

    // Open routes.
    let health = http(admin, "GET", "/health", None, b"").await;
    assert_eq!(
        (health.status, health.json()),
        (200, serde_json::json!({"status": "ok"}))
    );
    for n in &cluster.nodes {
        let ready = http(n.admin_addr, "GET", "/ready", None, b"").await;
        assert_eq!(ready.status, 200, "{}", ready.text());
        let readiness: Readiness = serde_json::from_slice(&ready.body).expect("Readiness");
        assert!(readiness.ready && readiness.checks.iter().all(|c| c.ok));
        let names: HashSet<&str> = readiness.checks.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains("collateral") && names.contains("certificate"));
    }

    // Status of every node.
    for (i, n) in cluster.nodes.iter().enumerate() {
        let r = http(n.admin_addr, "GET", "/v1/status", Some(&token), b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let status: NodeStatus = serde_json::from_slice(&r.body).expect("NodeStatus");
        assert_eq!(status.node_id, ids[i]);
        assert_eq!(status.network, NETWORK);
        assert_eq!(status.network_id, NetworkId::from_name(NETWORK).to_string());
        assert_eq!(status.mode, NodeMode::Dev);
        assert_eq!(r.json()["mode"], "dev");
        assert_eq!(status.started_at, nodes[i].network().started_at());
        assert!(!status.version.is_empty());
    }

    // Peers of node 0: the two others, connected, with their verdicts.
    let r = http(admin, "GET", "/v1/peers", Some(&token), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let peers: PeersResponse = serde_json::from_slice(&r.body).expect("PeersResponse");
    let listed: HashSet<&str> = peers.peers.iter().map(|p| p.node_id.as_str()).collect();
    assert_eq!(listed, ids[1..].iter().map(String::as_str).collect());
    let dev_td = DevTd::named(DEV_TD_NAME);
    for p in &peers.peers {
        let node = nodes
            .iter()
            .find(|n| n.node_id().to_string() == p.node_id)
            .expect("a cluster node");
        assert!(p.connected, "{} connected", p.node_id);
        assert_eq!(p.addrs, vec![node.local_addr().to_string()]);
        let verdict = p.verdict.as_ref().expect("a connected peer has a verdict");
        assert_eq!(verdict.matched_entry.as_deref(), Some("tessella-dev"));
        assert_eq!(verdict.tcb_status, "UpToDate");
        assert_eq!(verdict.measurements, dev_td.measurements);
        assert_eq!(verdict.anchor, nodes[0].network().anchor_name());
        assert!(verdict.verdict_expires > common::now());
        assert!(p.ticket_expires.expect("ticket expiry") > common::now());
    }

    // 401 without a usable token, on every protected route.
    for (method, path) in [
        ("GET", "/v1/status"),
        ("GET", "/v1/peers"),
        ("GET", "/v1/attestation"),
        ("POST", "/v1/collateral"),
        ("GET", "/metrics"),
    ] {
        let r = http(admin, method, path, None, b"").await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert_eq!(r.error_code(), "unauthenticated", "{method} {path}");
        assert!(
            r.headers
                .get("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{method} {path}: challenge"
        );
    }
    let stranger = TicketIssuer::generate_es256("tessella-dev-issuer").expect("issuer");
    let forged = stranger
        .issue(
            &stranger
                .claims(ids[0].clone(), NETWORK, common::now(), 600)
                .with_admin(true),
        )
        .expect("ticket");
    let r = http(admin, "GET", "/v1/status", Some(&forged), b"").await;
    assert_eq!(
        (r.status, r.error_code()),
        (401, "unknown_issuer".to_string())
    );
    let r = http(admin, "GET", "/v1/status", Some("not-a-jwt"), b"").await;
    assert_eq!((r.status, r.error_code()), (401, "malformed".to_string()));

    // 403 with a valid ticket of the cluster's issuer that is not an admin
    // ticket: node 0's own peer ticket.
    let ticket = node_ticket(&cluster).await;
    let issuers: Vec<TrustedIssuer> = serde_json::from_slice(
        &std::fs::read(dir.path().join("dev/issuers.json")).expect("issuers.json"),
    )
    .expect("issuers");
    let claims = TicketValidator::new(NETWORK, issuers)
        .expect("validator")
        .validate(&ticket, Some(&ids[0]), common::now())
        .expect("node 0's ticket is valid for the cluster");
    assert!(!claims.is_admin());
    for (method, path) in [
        ("GET", "/v1/status"),
        ("GET", "/v1/peers"),
        ("POST", "/v1/collateral"),
        ("GET", "/metrics"),
    ] {
        let r = http(admin, method, path, Some(&ticket), b"{}").await;
        assert_eq!(
            (r.status, r.error_code()),
            (403, "forbidden".to_string()),
            "{method} {path}"
        );
    }

    // Collateral uploads: garbage and a JSON object that is no bundle are
    // refused with 400; the cluster's own bundle is accepted (already held).
    for body in [&b"garbage \x00\xff"[..], b"{}", b"[1,2,3]"] {
        let r = http(admin, "POST", "/v1/collateral", Some(&token), body).await;
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert_eq!(r.error_code(), "bad_collateral");
        assert!(r.headers["content-type"].starts_with("application/json"));
    }
    let bundle = std::fs::read(dir.path().join("dev/collateral/dev.json")).expect("dev collateral");
    let r = http(admin, "POST", "/v1/collateral", Some(&token), &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stored"], false, "the node already held it");

    // Metrics with the admin token.
    let r = http(admin, "GET", "/metrics", Some(&token), b"").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain"));
    let text = r.text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("tessella_peers{") && l.contains(&ids[0])),
        "tessella_peers for node 0 in:\n{text}"
    );

    // Unknown routes are 404 with the JSON error, without authentication.
    let r = http(admin, "GET", "/v2/nothing", None, b"").await;
    assert_eq!((r.status, r.error_code()), (404, "not_found".to_string()));

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_for_raft_groups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = DevCluster::start(DevOptions {
        nodes: 3,
        network: NETWORK.into(),
        data_dir: dir.path().join("dev"),
        gossip_interval: common::GOSSIP,
        seed: SEED.into(),
        ..DevOptions::default()
    })
    .await
    .expect("dev cluster starts");
    let token = cluster.admin_token.clone();
    let t = Some(token.as_str());
    let ids: HashSet<String> = cluster
        .nodes
        .iter()
        .map(|n| n.node.node_id().to_string())
        .collect();
    let status = |v: &Value| {
        let voters: HashSet<String> = v["voters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        (voters, v["leader"].as_str().map(String::from))
    };
    // The dev group forms with the three nodes as voters.
    let mut leader = None;
    for _ in 0..2000 {
        let r = http(cluster.nodes[0].admin_addr, "GET", "/v1/groups/dev", t, b"").await;
        if r.status == 200 {
            let (voters, l) = status(&r.json());
            if voters == ids && l.is_some() {
                leader = l;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = leader.expect("the dev group forms with three voters");
    let list = http(cluster.nodes[1].admin_addr, "GET", "/v1/groups", t, b"").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let groups = list.json();
    // Beside the dev group, the dev map `kv` runs on its own group.
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, vec!["collection/kv", "dev"]);
    let dev = &groups["groups"][1];
    assert_eq!(dev["target_voters"], 3);
    assert!(dev["committed"].is_u64());

    // Errors.
    let none = http(
        cluster.nodes[0].admin_addr,
        "GET",
        "/v1/groups/nope",
        t,
        b"",
    )
    .await;
    assert_eq!(
        (none.status, none.json()["error"]["code"].clone()),
        (404, "no_such_group".into())
    );
    let anonymous = http(cluster.nodes[0].admin_addr, "GET", "/v1/groups", None, b"").await;
    assert_eq!(anonymous.status, 401);
    let members = "/v1/groups/dev/members";
    for body in [
        &b"{"[..],
        br#"{"action":"evict","node":"00"}"#,
        br#"{"action":"promote","node":"xyz"}"#,
    ] {
        let r = http(cluster.nodes[0].admin_addr, "POST", members, t, body).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (400, "bad_body".into()),
            "{}",
            r.text()
        );
    }
    let at = |id: &str| {
        cluster
            .nodes
            .iter()
            .find(|n| n.node.node_id().to_string() == id)
            .expect("a dev node")
            .admin_addr
    };
    let follower = ids
        .iter()
        .find(|id| **id != leader)
        .expect("a follower")
        .clone();
    // A membership change sent to a follower is refused with 409.
    let body = format!(r#"{{"action":"remove","node":"{leader}"}}"#);
    let refused = http(at(&follower), "POST", members, t, body.as_bytes()).await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "membership_refused");

    // On the leader: demote nothing, but remove a follower and add it back
    // as a learner, then promote it.
    let remove = format!(r#"{{"action":"remove","node":"{follower}"}}"#);
    let r = http(at(&leader), "POST", members, t, remove.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["log_index"].as_u64().is_some_and(|i| i > 0));
    let view = http(at(&leader), "GET", "/v1/groups/dev", t, b"")
        .await
        .json();
    assert!(!status(&view).0.contains(&follower), "{view}");
    let add = format!(r#"{{"action":"add_learner","node":"{follower}"}}"#);
    let r = http(at(&leader), "POST", members, t, add.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut promoted = false;
    for _ in 0..500 {
        let v = http(at(&leader), "GET", "/v1/groups/dev", t, b"")
            .await
            .json();
        if status(&v).0 == ids && v["joint"] == false {
            promoted = true;
            break;
        }
        // Upkeep promotes a caught-up voter-role learner by itself; the
        // route does it too (409 while another change is in progress).
        let promote = format!(r#"{{"action":"promote","node":"{follower}"}}"#);
        let _ = http(at(&leader), "POST", members, t, promote.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(promoted, "the follower is a voter again");
    let v = http(at(&leader), "GET", "/v1/groups/dev", t, b"")
        .await
        .json();
    let progress = v["replication"]
        .as_array()
        .expect("the leader's replication view");
    assert!(
        progress
            .iter()
            .all(|p| p["lag"].is_u64() && p["matched"].is_u64()),
        "{v}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_routes_of_the_dev_map() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = DevCluster::start(DevOptions {
        nodes: 3,
        network: NETWORK.into(),
        data_dir: dir.path().join("dev"),
        gossip_interval: common::GOSSIP,
        seed: SEED.into(),
        ..DevOptions::default()
    })
    .await
    .expect("dev cluster starts");
    let token = cluster.admin_token.clone();
    let t = Some(token.as_str());
    let a = |i: usize| cluster.nodes[i].admin_addr;
    let item = "/v1/collections/kv/items/greeting";
    // The kv map forms; until then writes answer 503 (no quorum).
    let mut first = None;
    for _ in 0..1000 {
        let r = http(a(1), "PUT", item, t, br#"{"hello":"world"}"#).await;
        if r.status == 200 {
            first = r.json()["version"].as_u64();
            break;
        }
        assert_eq!((r.status, r.error_code()), (503, "no_quorum".into()));
        assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = first.expect("the kv map takes a write");
    // Any node reads it (linearizable by default), with its version as ETag.
    let r = http(a(2), "GET", item, t, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"]["hello"], "world");
    assert_eq!(r.headers.get("etag"), Some(&format!("\"{v}\"")));
    let list = http(a(0), "GET", "/v1/collections", t, b"").await;
    assert_eq!(list.json()["collections"][0]["name"], "kv");
    // Conditional writes.
    let stale = format!("\"{}\"", v + 1000);
    let r = http_with(a(0), "PUT", item, t, &[("If-Match", &stale)], b"1").await;
    assert_eq!(
        (r.status, r.error_code()),
        (412, "precondition_failed".into())
    );
    let r = http_with(a(0), "PUT", item, t, &[("If-None-Match", "*")], b"1").await;
    assert_eq!(r.status, 412);
    let current = format!("\"{v}\"");
    let r = http_with(a(0), "PUT", item, t, &[("If-Match", &current)], b"2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Errors.
    let long = format!("/v1/collections/kv/items/{}", "k".repeat(2000));
    for (method, path, body, token, want) in [
        ("PUT", item, &b"{nope"[..], t, (400, "bad_json")),
        ("PUT", long.as_str(), &b"1"[..], t, (413, "too_large")),
        (
            "GET",
            "/v1/collections/kv/items/absent",
            &b""[..],
            t,
            (404, "no_such_key"),
        ),
        (
            "DELETE",
            "/v1/collections/kv/items/absent",
            &b""[..],
            t,
            (404, "no_such_key"),
        ),
        (
            "GET",
            "/v1/collections/nope/items/x",
            &b""[..],
            t,
            (404, "no_such_collection"),
        ),
        (
            "GET",
            "/v1/collections/kv?consistency=maybe",
            &b""[..],
            t,
            (400, "bad_request"),
        ),
        ("GET", item, &b""[..], None, (401, "unauthenticated")),
    ] {
        let r = http(a(1), method, path, token, body).await;
        assert_eq!(
            (r.status, r.error_code()),
            (want.0, want.1.to_string()),
            "{method} {path}"
        );
    }
    // A node's ticket grants `write` on kv (not admin): it may write.
    let node_token = node_ticket(&cluster).await;
    let r = http(
        a(2),
        "PUT",
        "/v1/collections/kv/items/by-node",
        Some(&node_token),
        b"true",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http(a(2), "GET", "/v1/status", Some(&node_token), b"").await;
    assert_eq!(r.status, 403, "the node ticket is not an admin ticket");
    // Compare-and-swap increments from all three nodes at once: every
    // success is counted exactly once in the final value.
    let counter = "/v1/collections/kv/items/counter";
    assert_eq!(http(a(0), "PUT", counter, t, b"0").await.status, 200);
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (addr, token) = (a(i), token.clone());
        tasks.push(tokio::spawn(async move {
            let (mut won, mut lost) = (0u64, 0u64);
            for _ in 0..8 {
                let r = http(addr, "GET", counter, Some(&token), b"").await;
                let n = r.json()["value"].as_u64().expect("a number");
                let tag = r.headers.get("etag").cloned().expect("etag");
                let body = (n + 1).to_string();
                let w = http_with(
                    addr,
                    "PUT",
                    counter,
                    Some(&token),
                    &[("If-Match", &tag)],
                    body.as_bytes(),
                )
                .await;
                match w.status {
                    200 => won += 1,
                    412 => lost += 1,
                    other => panic!("CAS answered {other}: {}", w.text()),
                }
            }
            (won, lost)
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += bounded("CAS writers", task).await.expect("task").0;
    }
    let r = http(a(1), "GET", counter, t, b"").await;
    assert_eq!(r.json()["value"].as_u64(), Some(won));
    assert!(won >= 1);
    let r = http(a(1), "DELETE", counter, t, b"").await;
    assert_eq!(r.status, 200);
    // A valid ticket that grants nothing on kv: 403, for reads and writes.
    let der = std::fs::read(cluster.data_dir.join("issuer.key")).expect("issuer key");
    let issuer = TicketIssuer::from_pkcs8_der(
        "tessella-dev-issuer",
        tessella_attestation::TicketAlgorithm::Es256,
        &der,
    )
    .expect("the dev issuer");
    let claims = issuer
        .claims(hex::encode([7u8; 32]), NETWORK, common::now(), 600)
        .grant(
            tessella_attestation::ResourceKind::Collection,
            "other",
            tessella_attestation::Permission::Write,
        );
    let stranger = issuer.issue(&claims).expect("ticket");
    for method in ["GET", "PUT", "DELETE"] {
        let r = http(a(0), method, item, Some(&stranger), b"1").await;
        assert_eq!(
            (r.status, r.error_code()),
            (403, "forbidden".into()),
            "{method}"
        );
    }
    // Two of the three voters gone: no quorum. Writes answer 503 with
    // Retry-After, nothing applied: at once on a leader that has heard from
    // no quorum for two election timeouts, after the write timeout on a
    // follower that finds no leader. Only a write the leader took in before
    // it noticed answers 504 (its outcome is unknown).
    let mut cluster = cluster;
    let survivor = cluster.nodes.remove(0);
    for n in cluster.nodes.drain(..) {
        n.node.shutdown().await;
    }
    bounded("writes without quorum answer 503", async {
        loop {
            let r = http(survivor.admin_addr, "PUT", item, t, b"3").await;
            if r.status == 503 {
                assert_eq!(r.error_code(), "no_quorum");
                assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
                return;
            }
            assert_eq!(r.status, 504, "without quorum: {}", r.text());
            assert_eq!(r.error_code(), "outcome_unknown");
        }
    })
    .await;
    survivor.node.shutdown().await;
}
