//! Protocol abuse by an admitted peer, and by clients that never get that far:
//! garbage discovery frames, oversized frames, bad stream headers, garbage on
//! the control stream, an unknown ALPN. Each is cut off with the code the
//! wire documentation gives (stream stopped, or connection closed), while the
//! rest of the cluster keeps its catalog and still admits a new node.

mod common;

use std::net::SocketAddr;

use common::{
    app_close, bounded, catalog_ids, connected_ids, crypto_code, full_mesh_catalogs,
    handshake_refused, wait_until, Fixture, RawOptions, RawPeer,
};
use quinn::{Connection, ReadError};
use rustls::AlertDescription;
use tessella_node::admission::ControlMsg;
use tessella_node::discovery::gossip::MAX_WANT;
use tessella_node::discovery::{DiscoveryMsg, DiscoveryV1};
use tessella_node::id::NodeId;
use tessella_node::wire::{self, frame::encode_frame, CloseCode, StreamFamily, StreamHeader};
use tessella_node::Node;

const MAX: usize = wire::DEFAULT_MAX_FRAME;

/// The code `conn`'s peer stops a new uni stream with after reading `bytes`
/// from it. The stream is left open, so only the peer can end it.
async fn uni_cut(conn: &Connection, what: &str, bytes: &[u8]) -> CloseCode {
    let mut send = bounded("opening a uni stream", conn.open_uni())
        .await
        .expect("open uni");
    send.write_all(bytes).await.expect("write");
    let code = bounded(
        &format!("the node stopping the stream ({what})"),
        send.stopped(),
    )
    .await
    .expect("stream state")
    .expect("the node stops the stream before it ends");
    CloseCode::try_from(code).unwrap_or_else(|c| panic!("stop code {c} is not one of ours"))
}

/// The codes `conn`'s peer stops and resets a new bi stream with after
/// reading `bytes` from it.
async fn bi_cut(conn: &Connection, bytes: &[u8]) -> (CloseCode, CloseCode) {
    let (mut send, mut recv) = bounded("opening a bi stream", conn.open_bi())
        .await
        .expect("open bi");
    send.write_all(bytes).await.expect("write");
    let stopped = bounded("the node stopping the stream", send.stopped())
        .await
        .expect("stream state")
        .expect("the node stops the stream before it ends");
    let mut buf = [0u8; 16];
    let reset = match bounded("the node resetting its side", recv.read(&mut buf)).await {
        Err(ReadError::Reset(code)) => code,
        other => panic!("expected the node to reset its side, got {other:?}"),
    };
    let ours = |c| CloseCode::try_from(c).unwrap_or_else(|c| panic!("code {c} is not one of ours"));
    (ours(stopped), ours(reset))
}

/// A frame with an explicit length prefix.
fn raw_frame(len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The discovery stream header followed by `rest`.
fn discovery(rest: &[u8]) -> Vec<u8> {
    let mut out = StreamHeader::new(StreamFamily::Discovery).encode().to_vec();
    out.extend_from_slice(rest);
    out
}

/// The three-node cluster still holds together and admits a new node; no
/// raw peer is in any catalog.
async fn cluster_still_works(fixture: &Fixture, nodes: &[Node], raw: &[NodeId]) {
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
    for n in nodes {
        let connected = connected_ids(n);
        for id in &ids {
            assert!(
                *id == n.node_id() || connected.contains(id),
                "good sessions survive"
            );
        }
    }
    let newcomer = fixture.node(vec![nodes[0].local_addr()]).await;
    let all: Vec<&Node> = nodes.iter().chain([&newcomer]).collect();
    wait_until(
        || full_mesh_catalogs(&all),
        "a new node joins after the abuse and every node sees it",
    )
    .await;
    for n in &all {
        let catalog = catalog_ids(n);
        assert!(
            raw.iter().all(|id| !catalog.contains(id)),
            "raw peers publish no record"
        );
    }
    newcomer.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_and_bad_headers_are_cut_off() {
    let fixture = Fixture::new("protocol-streams");
    let nodes = fixture.converged(3).await;
    let target = nodes[0].local_addr();
    let peer = fixture.raw_peer();
    let (conn, reply) = peer.admitted(&fixture, target).await;
    assert_eq!(reply.network, fixture.network_id(), "the node's Hello");
    let id = peer.node_id();
    wait_until(
        || connected_ids(&nodes[0]).contains(&id),
        "the raw peer is admitted",
    )
    .await;

    // Frames that do not decode: an unknown message version, an unknown V1
    // variant, a valid message followed by a stray byte, bytes of noise.
    let mut trailing = encode_frame(
        &DiscoveryMsg::V1(DiscoveryV1::Want { node_ids: vec![] }),
        MAX,
    )
    .expect("encode");
    trailing.push(0x00);
    let len = u32::try_from(trailing.len() - 4).expect("len");
    trailing[..4].copy_from_slice(&len.to_be_bytes());
    let garbage: [(&str, Vec<u8>); 4] = [
        ("unknown version", raw_frame(2, &[0x05, 0x00])),
        ("unknown variant", raw_frame(2, &[0x00, 0x09])),
        ("trailing byte", trailing),
        ("noise", raw_frame(8, &[0xff; 8])),
    ];
    for (what, frame) in garbage {
        assert_eq!(
            uni_cut(&conn, what, &discovery(&frame)).await,
            CloseCode::ProtocolViolation,
            "{what}"
        );
    }
    // The same on the collateral relay stream (a uni control stream).
    let mut relay = StreamHeader::new(StreamFamily::Control).encode().to_vec();
    relay.extend_from_slice(&raw_frame(8, &[0xff; 8]));
    assert_eq!(
        uni_cut(&conn, "noise on the relay stream", &relay).await,
        CloseCode::ProtocolViolation
    );
    // A valid frame whose list exceeds the protocol's bound.
    let too_many = DiscoveryMsg::V1(DiscoveryV1::Want {
        node_ids: (0..=MAX_WANT).map(|i| NodeId([i as u8; 32])).collect(),
    });
    assert_eq!(
        uni_cut(
            &conn,
            "a Want over MAX_WANT",
            &discovery(&encode_frame(&too_many, MAX).expect("encode"))
        )
        .await,
        CloseCode::ProtocolViolation,
        "a Want over MAX_WANT"
    );

    // Stream headers: malformed ones are protocol violations, well-formed ones
    // for a family this node does not serve are unknown families, a version
    // the family does not speak is an unsupported version.
    let headers: [(&str, [u8; 4], CloseCode); 5] = [
        ("bad magic", [b'X', 1, 1, 0], CloseCode::ProtocolViolation),
        (
            "reserved byte set",
            [b'T', 1, 1, 9],
            CloseCode::ProtocolViolation,
        ),
        (
            "unknown family",
            [b'T', 200, 1, 0],
            CloseCode::UnknownFamily,
        ),
        (
            "family not served",
            [b'T', 2, 1, 0],
            CloseCode::UnknownFamily,
        ),
        (
            "discovery version 9",
            [b'T', 1, 9, 0],
            CloseCode::UnsupportedVersion,
        ),
    ];
    for (what, header, code) in headers {
        assert_eq!(
            uni_cut(&conn, what, &header).await,
            code,
            "uni stream: {what}"
        );
    }
    // No bidirectional protocol is served after admission.
    assert_eq!(
        bi_cut(&conn, b"XT\x01\x00").await,
        (CloseCode::ProtocolViolation, CloseCode::ProtocolViolation),
        "bi stream: bad magic"
    );
    assert_eq!(
        bi_cut(&conn, &StreamHeader::new(StreamFamily::Control).encode()).await,
        (CloseCode::UnknownFamily, CloseCode::UnknownFamily),
        "bi stream: a second control stream"
    );

    // A bi stream whose header never completes must not stall the peer's
    // other streams: the next bi stream (accepted after it, streams come in
    // order) and uni streams are still served.
    let (mut stalled, _stalled_recv) = conn.open_bi().await.expect("open bi");
    stalled.write_all(b"T\x01").await.expect("write");
    assert_eq!(
        bi_cut(&conn, b"XT\x01\x00").await,
        (CloseCode::ProtocolViolation, CloseCode::ProtocolViolation),
        "bi stream after a stalled one"
    );
    assert_eq!(
        uni_cut(
            &conn,
            "noise after a stalled bi stream",
            &discovery(&raw_frame(8, &[0xff; 8]))
        )
        .await,
        CloseCode::ProtocolViolation
    );

    // Stream-level abuse costs the stream, not the session.
    assert!(conn.close_reason().is_none(), "the session survives");
    assert!(connected_ids(&nodes[0]).contains(&id));
    cluster_still_works(&fixture, &nodes, &[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_the_connection() {
    let fixture = Fixture::new("protocol-oversized");
    let nodes = fixture.converged(3).await;
    let target = nodes[0].local_addr();
    let mut raw = Vec::new();
    for len in [MAX as u32 + 1, u32::MAX] {
        let peer = fixture.raw_peer();
        let (conn, _) = peer.admitted(&fixture, target).await;
        let id = peer.node_id();
        wait_until(
            || connected_ids(&nodes[0]).contains(&id),
            "the raw peer is admitted",
        )
        .await;
        // Only the prefix: the node must judge it before reading a payload.
        let mut send = conn.open_uni().await.expect("open uni");
        send.write_all(&discovery(&len.to_be_bytes()))
            .await
            .expect("write");
        assert_eq!(
            app_close(&conn).await,
            (CloseCode::FrameTooLarge, "frame too large".to_string()),
            "length prefix {len}"
        );
        wait_until(
            || !connected_ids(&nodes[0]).contains(&id),
            "the oversized sender is disconnected",
        )
        .await;
        raw.push(id);
    }
    cluster_still_works(&fixture, &nodes, &raw).await;
}

/// A raw peer's handshake, then `bytes` on a new bi stream: the connection
/// close the node answers with.
async fn control_abuse(fixture: &Fixture, target: SocketAddr, bytes: &[u8]) -> (CloseCode, String) {
    let peer = fixture.raw_peer();
    let conn = peer.connect(target).await.expect("handshake");
    let (mut send, _recv) = conn.open_bi().await.expect("open bi");
    send.write_all(bytes).await.expect("write");
    app_close(&conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_before_admission_and_unknown_alpn_are_refused() {
    let fixture = Fixture::new("protocol-admission");
    let nodes = fixture.converged(3).await;
    let target = nodes[0].local_addr();
    let control = StreamHeader::new(StreamFamily::Control).encode();
    let with_control = |rest: &[u8]| [&control[..], rest].concat();

    let (code, reason) =
        control_abuse(&fixture, target, &with_control(&raw_frame(3, &[0xff; 3]))).await;
    assert_eq!(
        code,
        CloseCode::ProtocolViolation,
        "garbage Hello: {reason}"
    );
    assert!(reason.starts_with("malformed frame payload"), "{reason}");

    let (code, reason) = control_abuse(
        &fixture,
        target,
        &with_control(&(MAX as u32 + 1).to_be_bytes()),
    )
    .await;
    assert_eq!(code, CloseCode::FrameTooLarge, "oversized Hello: {reason}");

    let (code, reason) = control_abuse(&fixture, target, b"XT\x00\x00").await;
    assert_eq!(code, CloseCode::ProtocolViolation, "bad magic: {reason}");
    assert!(reason.contains("bad magic"), "{reason}");

    let (code, reason) = control_abuse(
        &fixture,
        target,
        &discovery(
            &encode_frame(
                &DiscoveryMsg::V1(DiscoveryV1::Want { node_ids: vec![] }),
                MAX,
            )
            .expect("encode"),
        ),
    )
    .await;
    assert_eq!(
        code,
        CloseCode::ProtocolViolation,
        "discovery before admission: {reason}"
    );
    assert_eq!(reason, "first stream is not the control stream");

    // A Hello the node cannot read as a ControlMsg at all is the same.
    let hello = ControlMsg::V1(tessella_node::admission::Hello {
        network: fixture.network_id(),
        ticket: "x".repeat(10),
        software: String::new(),
        incarnation: 1,
    });
    let mut frame = encode_frame(&hello, MAX).expect("encode");
    frame[4] = 7; // unknown ControlMsg version
    let (code, _) = control_abuse(&fixture, target, &with_control(&frame)).await;
    assert_eq!(code, CloseCode::ProtocolViolation, "unknown Hello version");

    // An unknown ALPN fails the TLS handshake itself (no_application_protocol).
    let http = RawPeer::new(RawOptions {
        alpn: b"http/1.1".to_vec(),
        ..fixture.raw_options()
    });
    let close = handshake_refused(http.connect(target).await).await;
    assert_eq!(
        close.error_code,
        crypto_code(AlertDescription::NoApplicationProtocol),
        "reason {:?}",
        String::from_utf8_lossy(&close.reason)
    );
    assert_eq!(
        nodes[0].verifier().peer_identity(http.cert().as_ref()),
        None,
        "the handshake stopped before the certificate was judged"
    );

    for n in &nodes {
        assert_eq!(connected_ids(n).len(), 2, "no raw peer was admitted");
    }
    cluster_still_works(&fixture, &nodes, &[http.node_id()]).await;
}
