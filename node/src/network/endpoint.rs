//! The quinn endpoint and its RA-TLS configuration.
//!
//! TLS 1.3 only, ring provider, mutual RA-TLS verifiers on both sides, the
//! one ALPN, and QUIC limits that bound what one peer can open at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AsyncUdpSocket, Endpoint, VarInt};
use tessella_attestation::ratls::{self, CertResolver, RatlsVerifier};

use super::NetworkError;
use crate::wire;

/// Wraps the node's UDP socket before quinn uses it (the test kit injects
/// link faults this way; production leaves the socket alone).
pub type SocketWrapper =
    Arc<dyn Fn(Arc<dyn AsyncUdpSocket>) -> Arc<dyn AsyncUdpSocket> + Send + Sync>;

/// Most uni streams a peer may have open towards us at once (each is served
/// by one task, so this bounds tasks per peer).
pub const MAX_UNI_STREAMS: u32 = 64;
/// Most bi streams a peer may have open towards us at once.
pub const MAX_BI_STREAMS: u32 = 16;

/// Bind `listen` and configure the endpoint as both server and client.
pub(crate) fn endpoint(
    listen: SocketAddr,
    resolver: Arc<CertResolver>,
    verifier: Arc<RatlsVerifier>,
    wrap: Option<&SocketWrapper>,
) -> Result<Endpoint, NetworkError> {
    let tls = |e: rustls::Error| NetworkError::Transport(e.to_string());
    let mut server_tls = ratls::server_config(resolver.clone(), verifier.clone()).map_err(tls)?;
    server_tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let mut client_tls = ratls::client_config(resolver, verifier).map_err(tls)?;
    client_tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let quic =
        |e: quinn::crypto::rustls::NoInitialCipherSuite| NetworkError::Transport(e.to_string());
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_BI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server_tls).map_err(quic)?,
    ));
    server.transport_config(transport.clone());
    let bind = |error| NetworkError::Bind {
        addr: listen,
        error,
    };
    let socket = std::net::UdpSocket::bind(listen).map_err(bind)?;
    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    let socket = runtime.wrap_udp_socket(socket).map_err(bind)?;
    let socket = match wrap {
        Some(wrap) => wrap(socket),
        None => socket,
    };
    let mut endpoint = Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
    .map_err(bind)?;
    let mut client = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client_tls).map_err(quic)?,
    ));
    client.transport_config(transport);
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}
