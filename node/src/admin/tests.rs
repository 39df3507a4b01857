//! The admin router driven with `oneshot` over a fake backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tessella_attestation::clock::ManualClock;
use tessella_attestation::measurements::{Digest48, TdMeasurements};
use tessella_attestation::ticket::DEFAULT_LEEWAY_SECS;
use tessella_attestation::{TicketIssuer, TicketValidator};
use tower::ServiceExt;

use super::*;

const NET: &str = "test-net";
const NOW: u64 = 1_750_000_000;
const TTL: u64 = 600;
/// The operator's id: node-id shaped, and not this node's id.
const OPERATOR: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
const METRICS: &str = "# TYPE tessella_catalog_peers gauge\ntessella_catalog_peers 2\n";

fn measurements(seed: u8) -> TdMeasurements {
    TdMeasurements {
        mrtd: Digest48([seed; 48]),
        rtmr: [
            Digest48([seed + 1; 48]),
            Digest48([seed + 2; 48]),
            Digest48([seed + 3; 48]),
            Digest48([seed + 4; 48]),
        ],
        mrconfigid: Digest48([0; 48]),
        mrowner: Digest48([0; 48]),
        mrownerconfig: Digest48([0; 48]),
        td_attributes: [0; 8],
        xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
    }
}

fn node_status() -> NodeStatus {
    NodeStatus {
        node_id: "ab".repeat(32),
        network: NET.into(),
        network_id: "cd".repeat(32),
        mode: NodeMode::Dev,
        uptime_secs: 42,
        version: "0.1.0".into(),
        started_at: NOW - 42,
    }
}

fn peer_views() -> Vec<PeerView> {
    vec![
        PeerView {
            node_id: "11".repeat(32),
            addrs: vec!["127.0.0.1:7001".into()],
            connected: true,
            verdict: Some(VerdictView {
                measurements: measurements(1),
                tcb_status: "UpToDate".into(),
                advisory_ids: vec![],
                matched_entry: Some("dev-image".into()),
                anchor: "tessella-dev".into(),
                verdict_expires: NOW + 3600,
            }),
            ticket_expires: Some(NOW + 600),
            tags: vec!["zone-a".into()],
            services: vec![ServiceView {
                kind: "stream".into(),
                id: "33".repeat(32),
                role: "producer".into(),
            }],
            last_seen_secs_ago: 1,
        },
        PeerView {
            node_id: "22".repeat(32),
            addrs: vec!["127.0.0.1:7002".into(), "[::1]:7002".into()],
            connected: false,
            verdict: None,
            ticket_expires: None,
            tags: vec![],
            services: vec![],
            last_seen_secs_ago: 17,
        },
    ]
}

fn attestation_view() -> AttestationView {
    AttestationView {
        node_id: "ab".repeat(32),
        quote_hex: "0400020081000000".into(),
        cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        measurements: measurements(7),
        cert_not_before: NOW - 60,
        cert_not_after: NOW + 86_400,
        anchor: "tessella-dev".into(),
    }
}

/// A backend with fixed answers that records collateral uploads.
struct Fake {
    readiness: Mutex<Readiness>,
    uploads: AtomicUsize,
    last_upload_len: AtomicUsize,
}

impl Fake {
    fn new() -> Self {
        Fake {
            readiness: Mutex::new(Readiness::from_checks(vec![
                ReadinessCheck::new("endpoint_bound", true, "127.0.0.1:7000"),
                ReadinessCheck::new("certificate_valid", true, "until 2025-06-16T15:06:40Z"),
            ])),
            uploads: AtomicUsize::new(0),
            last_upload_len: AtomicUsize::new(0),
        }
    }

    fn set_ready(&self, readiness: Readiness) {
        *self.readiness.lock().expect("lock") = readiness;
    }
}

impl AdminBackend for Fake {
    fn status(&self) -> NodeStatus {
        node_status()
    }

    fn ready(&self) -> Readiness {
        self.readiness.lock().expect("lock").clone()
    }

    fn attestation(&self) -> AttestationView {
        attestation_view()
    }

    /// Accepts `{"fmspc": "..."}`; `"fmspc": "already"` is reported as
    /// already stored; anything else is refused like the real verifier would.
    fn upload_collateral(&self, body: &[u8]) -> Result<CollateralAccepted, CollateralRejected> {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        self.last_upload_len.store(body.len(), Ordering::SeqCst);
        if body.is_empty() {
            return Err(CollateralRejected::new(
                "empty",
                "the collateral body is empty",
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|err| {
            CollateralRejected::new(
                "not_json",
                format!("collateral is not QuoteCollateralV3 JSON: {err}"),
            )
        })?;
        let fmspc = value["fmspc"]
            .as_str()
            .ok_or_else(|| CollateralRejected::new("incomplete", "collateral has no fmspc"))?;
        Ok(CollateralAccepted {
            fmspc: fmspc.to_owned(),
            valid_from: NOW - 100,
            valid_until: NOW + 30 * 86_400,
            stored: fmspc != "already",
        })
    }

    /// Accepts the text `good-ticket`; anything else is refused as malformed.
    fn install_ticket(
        &self,
        token: &str,
    ) -> Result<crate::admin::TicketInstalled, tessella_attestation::TicketError> {
        if token == "good-ticket" {
            Ok(crate::admin::TicketInstalled {
                node_id: "ab".repeat(32),
                expires: NOW + 3600,
            })
        } else {
            Err(tessella_attestation::TicketError::Malformed {
                reason: "not a JWT".into(),
            })
        }
    }

    fn revoke(&self, id: &str) -> Option<usize> {
        (id != "full").then_some(2)
    }

    fn metrics_text(&self) -> String {
        METRICS.to_owned()
    }
}

struct Harness {
    issuer: TicketIssuer,
    clock: Arc<ManualClock>,
    backend: Arc<Fake>,
    app: Router,
}

impl Harness {
    fn new() -> Self {
        Self::with(|auth| auth)
    }

    fn with(configure: impl FnOnce(AdminAuth) -> AdminAuth) -> Self {
        let issuer = TicketIssuer::generate_es256("ops").expect("issuer");
        let validator = TicketValidator::new(NET, [issuer.public_key()]).expect("validator");
        let clock = Arc::new(ManualClock::new(NOW));
        let backend = Arc::new(Fake::new());
        let auth = configure(AdminAuth::new(Arc::new(validator), clock.clone()));
        // Discovery's routes come as a sub-router, as in the node.
        let app = router(backend.clone(), auth, [peers_router(Arc::new(peer_views))]);
        Harness {
            issuer,
            clock,
            backend,
            app,
        }
    }

    fn token(&self, admin: bool) -> String {
        self.issuer
            .issue(
                &self
                    .issuer
                    .claims(OPERATOR, NET, NOW, TTL)
                    .with_admin(admin),
            )
            .expect("issue")
    }

    fn admin(&self) -> String {
        self.token(true)
    }

    async fn call(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(request(Method::GET, path, token, Body::empty()))
            .await
    }

    async fn upload(&self, body: impl Into<Body>) -> Reply {
        let token = self.admin();
        self.call(request(
            Method::POST,
            "/v1/collateral",
            Some(&token),
            body.into(),
        ))
        .await
    }
}

fn request(method: Method, path: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body).expect("request")
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).expect("json body")
    }

    /// Asserts an error reply with `status` and returns its detail.
    fn error(&self, status: StatusCode) -> ErrorDetail {
        assert_eq!(self.status, status, "{self:?}");
        self.json::<ErrorBody>().error
    }

    /// Asserts a 401 with a Bearer challenge and the given code.
    fn assert_unauthorized(&self, code: &str) {
        let error = self.error(StatusCode::UNAUTHORIZED);
        assert_eq!(error.code, code, "{self:?}");
        let challenge = self
            .headers
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{self:?}");
    }
}

const ADMIN_GETS: [&str; 4] = ["/v1/status", "/v1/peers", "/v1/attestation", "/metrics"];

#[tokio::test]
async fn admin_health_and_ready_need_no_token() {
    let h = Harness::new();
    let reply = h.get("/health", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json::<serde_json::Value>(),
        serde_json::json!({"status": "ok"})
    );

    let reply = h.get("/ready", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json::<Readiness>(), h.backend.ready());

    // A token is not needed, and a bad one does not hurt.
    let reply = h.get("/health", Some("garbage")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_ready_503_when_not_ready() {
    let h = Harness::new();
    let failing = Readiness::from_checks(vec![
        ReadinessCheck::new("endpoint_bound", true, "127.0.0.1:7000"),
        ReadinessCheck::new(
            "collateral_present",
            false,
            "no collateral for FMSPC 00906ed50000",
        ),
    ]);
    assert!(!failing.ready);
    h.backend.set_ready(failing.clone());
    let reply = h.get("/ready", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json::<Readiness>(), failing);

    // A backend claiming ready with a failing check is not believed.
    let mut inconsistent = failing.clone();
    inconsistent.ready = true;
    h.backend.set_ready(inconsistent);
    let reply = h.get("/ready", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!reply.json::<Readiness>().ready);
}

#[tokio::test]
async fn admin_status_peers_attestation_with_admin_token() {
    let h = Harness::new();
    let token = h.admin();

    let reply = h.get("/v1/status", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json::<NodeStatus>(), node_status());
    let raw: serde_json::Value = reply.json();
    assert_eq!(raw["mode"], "dev");
    assert_eq!(raw["node_id"], "ab".repeat(32));

    let reply = h.get("/v1/peers", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.json::<PeersResponse>(),
        PeersResponse {
            peers: peer_views()
        }
    );
    let raw: serde_json::Value = reply.json();
    let verdict = &raw["peers"][0]["verdict"];
    assert_eq!(verdict["tcb_status"], "UpToDate");
    assert_eq!(verdict["matched_entry"], "dev-image");
    assert_eq!(verdict["measurements"]["mrtd"], "01".repeat(48));
    assert_eq!(raw["peers"][1]["verdict"], serde_json::Value::Null);
    assert_eq!(
        raw["peers"][0]["services"],
        serde_json::json!([{"kind": "stream", "id": "33".repeat(32), "role": "producer"}])
    );

    let reply = h.get("/v1/attestation", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json::<AttestationView>(), attestation_view());
}

#[tokio::test]
async fn admin_401_without_token() {
    let h = Harness::new();
    for path in ADMIN_GETS {
        let reply = h.get(path, None).await;
        reply.assert_unauthorized("unauthenticated");
        let message = reply.json::<ErrorBody>().error.message;
        assert!(message.contains("Authorization"), "{message}");
    }
    let reply = h
        .call(request(
            Method::POST,
            "/v1/collateral",
            None,
            Body::from(r#"{"fmspc":"00906ed50000"}"#),
        ))
        .await;
    reply.assert_unauthorized("unauthenticated");
    assert_eq!(h.backend.uploads.load(Ordering::SeqCst), 0);

    // Other schemes, a bare token and an empty token are no credentials.
    let admin = h.admin();
    for value in ["Basic b3BzOnB3", "Bearer ", "Bearer", admin.as_str()] {
        let request = Request::builder()
            .uri("/v1/status")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .expect("request");
        h.call(request).await.assert_unauthorized("unauthenticated");
    }
}

#[tokio::test]
async fn admin_401_garbage_token() {
    let h = Harness::new();
    let huge = "x".repeat(10_000);
    for garbage in ["garbage", "a.b.c", "e30.e30.", huge.as_str()] {
        let reply = h.get("/v1/status", Some(garbage)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        let code = reply.json::<ErrorBody>().error.code;
        assert!(code == "malformed" || code == "too_large", "{code}");
        let challenge = reply.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        // The token is never echoed.
        assert!(
            !String::from_utf8_lossy(&reply.body).contains(garbage),
            "{reply:?}"
        );
    }
}

#[tokio::test]
async fn admin_401_expired_token() {
    let h = Harness::new();
    let token = h.admin();
    assert_eq!(
        h.get("/v1/status", Some(&token)).await.status,
        StatusCode::OK
    );
    // Still honoured within the leeway, refused after it.
    h.clock.set(NOW + TTL + DEFAULT_LEEWAY_SECS - 1);
    assert_eq!(
        h.get("/v1/status", Some(&token)).await.status,
        StatusCode::OK
    );
    h.clock.set(NOW + TTL + DEFAULT_LEEWAY_SECS);
    let reply = h.get("/v1/status", Some(&token)).await;
    reply.assert_unauthorized("expired");
    let message = reply.json::<ErrorBody>().error.message;
    assert!(message.contains("new one"), "{message}");

    // And a ticket from the future is not valid yet.
    h.clock.set(NOW - DEFAULT_LEEWAY_SECS - 1);
    h.get("/v1/status", Some(&token))
        .await
        .assert_unauthorized("not_yet_valid");
}

#[tokio::test]
async fn admin_401_token_for_another_network() {
    let h = Harness::new();
    let claims = h
        .issuer
        .claims(OPERATOR, "other-net", NOW, TTL)
        .with_admin(true);
    let token = h.issuer.issue(&claims).expect("issue");
    let reply = h.get("/v1/peers", Some(&token)).await;
    reply.assert_unauthorized("wrong_audience");
    // The client is not told which network this node is in.
    let body = String::from_utf8_lossy(&reply.body);
    assert!(!body.contains(NET), "{body}");
}

#[tokio::test]
async fn admin_401_untrusted_or_forged_token() {
    let h = Harness::new();
    // Same issuer name, different key: unknown kid.
    let stranger = TicketIssuer::generate_es256("ops").expect("issuer");
    let token = stranger
        .issue(&stranger.claims(OPERATOR, NET, NOW, TTL).with_admin(true))
        .expect("issue");
    h.get("/v1/status", Some(&token))
        .await
        .assert_unauthorized("unknown_issuer");

    // A non-admin ticket whose claims are edited to say admin: the signature
    // no longer verifies.
    let token = h.token(false);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims = h.issuer.claims(OPERATOR, NET, NOW, TTL).with_admin(true);
    parts[1] = base64url(&serde_json::to_vec(&claims).expect("json"));
    let forged = parts.join(".");
    h.get("/v1/status", Some(&forged))
        .await
        .assert_unauthorized("bad_signature");
}

/// Unpadded base64url, enough to forge a claims segment.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn admin_403_non_admin_token() {
    let h = Harness::new();
    let token = h.token(false);
    for path in ADMIN_GETS {
        let reply = h.get(path, Some(&token)).await;
        let error = reply.error(StatusCode::FORBIDDEN);
        assert_eq!(error.code, "forbidden");
        assert!(error.message.contains("admin"), "{error:?}");
    }
    let reply = h
        .call(request(
            Method::POST,
            "/v1/collateral",
            Some(&token),
            Body::from(r#"{"fmspc":"00906ed50000"}"#),
        ))
        .await;
    assert_eq!(reply.error(StatusCode::FORBIDDEN).code, "forbidden");
    assert_eq!(h.backend.uploads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn admin_collateral_garbage_400_with_backend_reason() {
    let h = Harness::new();
    let reply = h.upload("this is not collateral").await;
    let error = reply.error(StatusCode::BAD_REQUEST);
    assert_eq!(error.code, "not_json");
    assert!(
        error
            .message
            .starts_with("collateral is not QuoteCollateralV3 JSON"),
        "{error:?}"
    );

    let reply = h.upload(Body::empty()).await;
    let error = reply.error(StatusCode::BAD_REQUEST);
    assert_eq!(error.code, "empty");
    assert_eq!(error.message, "the collateral body is empty");
    assert_eq!(h.backend.uploads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn admin_collateral_oversized_413() {
    let h = Harness::new();
    let reply = h.upload(vec![b'x'; MAX_COLLATERAL_BODY + 1]).await;
    let error = reply.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error.code, "payload_too_large");
    assert_eq!(h.backend.uploads.load(Ordering::SeqCst), 0);

    // Exactly the limit reaches the backend (which refuses the garbage).
    let reply = h.upload(vec![b'x'; MAX_COLLATERAL_BODY]).await;
    assert_eq!(reply.error(StatusCode::BAD_REQUEST).code, "not_json");
    assert_eq!(
        h.backend.last_upload_len.load(Ordering::SeqCst),
        MAX_COLLATERAL_BODY
    );

    // Without a known length (chunked), the limit holds as well.
    let reply = h.upload(streamed_body(MAX_COLLATERAL_BODY + 1)).await;
    assert_eq!(
        reply.error(StatusCode::PAYLOAD_TOO_LARGE).code,
        "payload_too_large"
    );
    assert_eq!(h.backend.uploads.load(Ordering::SeqCst), 1);
}

/// A streaming body of `len` bytes with no size hint (sent chunked).
fn streamed_body(len: usize) -> Body {
    let body = Body::from_stream(Body::from(vec![b'y'; len]).into_data_stream());
    assert_eq!(axum::body::HttpBody::size_hint(&body).exact(), None);
    body
}

#[tokio::test]
async fn admin_collateral_accepted() {
    let h = Harness::new();
    let reply = h.upload(r#"{"fmspc":"00906ed50000"}"#).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(
        reply.json::<CollateralAccepted>(),
        CollateralAccepted {
            fmspc: "00906ed50000".into(),
            valid_from: NOW - 100,
            valid_until: NOW + 30 * 86_400,
            stored: true,
        }
    );

    let reply = h.upload(r#"{"fmspc":"already"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(!reply.json::<CollateralAccepted>().stored);
}

#[tokio::test]
async fn admin_unknown_route_404_and_wrong_method_405() {
    let h = Harness::new();
    let token = h.admin();
    for path in ["/", "/nope", "/v1", "/v1/nope", "/v1/status/", "/v2/status"] {
        let reply = h.get(path, Some(&token)).await;
        assert_eq!(reply.error(StatusCode::NOT_FOUND).code, "not_found");
    }
    // Unknown paths are not behind authentication.
    let reply = h.get("/v1/nope", None).await;
    assert_eq!(reply.error(StatusCode::NOT_FOUND).code, "not_found");

    for (method, path, allow) in [
        (Method::POST, "/health", "GET,HEAD"),
        (Method::DELETE, "/v1/status", "GET,HEAD"),
        (Method::GET, "/v1/collateral", "POST"),
        (Method::PUT, "/metrics", "GET,HEAD"),
    ] {
        let reply = h
            .call(request(method, path, Some(&token), Body::empty()))
            .await;
        assert_eq!(
            reply.error(StatusCode::METHOD_NOT_ALLOWED).code,
            "method_not_allowed"
        );
        let got = reply.headers[header::ALLOW].to_str().expect("ascii");
        assert_eq!(got.replace(' ', ""), allow, "{path}");
    }
}

#[tokio::test]
async fn admin_metrics_need_auth_and_serve_text() {
    let h = Harness::new();
    h.get("/metrics", None)
        .await
        .assert_unauthorized("unauthenticated");
    let reply = h.get("/metrics", Some(&h.admin())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(reply.body, METRICS.as_bytes());

    // Opting out makes /metrics public and nothing else.
    let h = Harness::with(AdminAuth::insecure_public_metrics);
    let reply = h.get("/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, METRICS.as_bytes());
    h.get("/v1/status", None)
        .await
        .assert_unauthorized("unauthenticated");
}

#[tokio::test]
async fn admin_serve_answers_and_shuts_down() {
    use std::io::{Read, Write};

    let h = Harness::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, h.app.clone(), async move {
        let _ = stopped.await;
    }));

    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    })
    .await
    .expect("client");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");

    stop.send(()).expect("server running");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server stops after shutdown")
        .expect("join")
        .expect("serve");
}

#[tokio::test]
async fn admin_ticket_install_validates_and_needs_admin() {
    let h = Harness::new();
    let admin = h.admin();
    let reply = h
        .call(request(
            Method::POST,
            "/v1/ticket",
            Some(&admin),
            Body::from("good-ticket"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let installed: crate::admin::TicketInstalled = reply.json();
    assert_eq!(installed.expires, NOW + 3600);
    let reply = h
        .call(request(
            Method::POST,
            "/v1/ticket",
            Some(&admin),
            Body::from("junk"),
        ))
        .await;
    assert_eq!(reply.error(StatusCode::BAD_REQUEST).code, "malformed");
    let reply = h
        .call(request(
            Method::POST,
            "/v1/ticket",
            None,
            Body::from("good-ticket"),
        ))
        .await;
    reply.assert_unauthorized("unauthenticated");
    let plain = h.token(false);
    let reply = h
        .call(request(
            Method::POST,
            "/v1/ticket",
            Some(&plain),
            Body::from("good-ticket"),
        ))
        .await;
    assert_eq!(reply.error(StatusCode::FORBIDDEN).code, "forbidden");
}

#[tokio::test]
async fn admin_revoke_checks_its_body() {
    let h = Harness::new();
    let admin = h.admin();
    let post =
        |body: &'static str| request(Method::POST, "/v1/revoke", Some(&admin), Body::from(body));
    let reply = h.call(post(r#"{"id":"t-1"}"#)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let revoked: crate::admin::Revoked = reply.json();
    assert_eq!((revoked.id.as_str(), revoked.closed_sessions), ("t-1", 2));
    assert_eq!(
        h.call(post("garbage"))
            .await
            .error(StatusCode::BAD_REQUEST)
            .code,
        "bad_body"
    );
    assert_eq!(
        h.call(post(r#"{"id":""}"#))
            .await
            .error(StatusCode::BAD_REQUEST)
            .code,
        "bad_body"
    );
    assert_eq!(
        h.call(post(r#"{"id":"full"}"#))
            .await
            .error(StatusCode::INSUFFICIENT_STORAGE)
            .code,
        "revocations_full"
    );
    h.call(request(
        Method::POST,
        "/v1/revoke",
        None,
        Body::from(r#"{"id":"x"}"#),
    ))
    .await
    .assert_unauthorized("unauthenticated");
}
