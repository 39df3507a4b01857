//! Link faults beneath the real QUIC stack: a UDP socket for quinn that cuts,
//! delays or loses outgoing datagrams following a shared plan.
//!
//! A [`Faults`] plan is shared by every endpoint of a test cluster. Each
//! endpoint's socket is wrapped with [`Faults::wrap`] and handed to
//! [`quinn::Endpoint::new_with_abstract_socket`]:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use quinn::Runtime;
//! use tessella_tests::kit::faults::Faults;
//!
//! let faults = Faults::new(7);
//! let std_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
//! let socket = faults.wrap(quinn::TokioRuntime.wrap_udp_socket(std_socket)?);
//! let endpoint = quinn::Endpoint::new_with_abstract_socket(
//!     quinn::EndpointConfig::default(),
//!     None,
//!     socket,
//!     Arc::new(quinn::TokioRuntime),
//! )?;
//! # let _ = endpoint; Ok(()) }
//! ```
//!
//! Rules name a link by the sender's bound address and the destination
//! address, and they are applied on the sending side only, in
//! [`quinn::AsyncUdpSocket::try_send`]. A rule on the link `b -> a` therefore
//! takes effect only when `b`'s socket is wrapped too: wrap both ends of every
//! link (the kit wraps every endpoint it builds). Bind sockets to concrete
//! addresses such as `127.0.0.1`, not the unspecified address, so the bound
//! address is the one peers see.
//!
//! A cut or lost datagram vanishes silently, as on a real network: `try_send`
//! reports success. The wrapped socket sends one datagram per transmit (no
//! GSO), so faults apply per datagram. Loss is drawn from a small PRNG per
//! link, seeded from the plan's seed in the order links are first named, so a
//! link's sequence of drops depends only on the seed, the order of the calls
//! that set up the plan and the datagrams sent on that link. Delayed datagrams
//! are sent later, in order per link, by a tokio task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// At most this many delayed datagrams are in flight across a plan; beyond it
/// a datagram due for delay is dropped and counted in
/// [`FaultStats::overflowed`].
pub const MAX_DELAYED: usize = 10_000;

/// Shared, clonable fault plan for a set of endpoints (one per test cluster).
///
/// Clones share one plan: a rule set through any clone applies to every socket
/// wrapped by any clone.
#[derive(Clone, Debug)]
pub struct Faults {
    plan: Arc<Mutex<Plan>>,
}

/// What the plan did with the datagrams offered to wrapped sockets so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Datagrams handed to the underlying socket, at once or after a delay.
    pub sent: u64,
    /// Datagrams dropped by a cut or an isolation, including delayed ones
    /// that met a cut when they were due.
    pub cut: u64,
    /// Datagrams dropped by random loss ([`Faults::drop_fraction`]).
    pub lost: u64,
    /// Datagrams held back by a delay ([`Faults::delay`]).
    pub delayed: u64,
    /// Datagrams dropped because [`MAX_DELAYED`] were already delayed (or
    /// because no tokio runtime was there to send them later).
    pub overflowed: u64,
}

/// The rules of one directed link.
#[derive(Debug)]
struct Link {
    cut: bool,
    delay: Duration,
    drop: f64,
    rng: u64,
}

/// The shared state behind [`Faults`].
#[derive(Debug)]
struct Plan {
    /// Seeds each new link's PRNG, in the order links are first named.
    seeder: u64,
    links: HashMap<(SocketAddr, SocketAddr), Link>,
    isolated: HashSet<SocketAddr>,
    in_flight: usize,
    stats: FaultStats,
}

/// The plan's decision for one outgoing datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    Send,
    Cut,
    Lost,
    Delay(Duration),
    Overflow,
}

impl Plan {
    fn link(&mut self, from: SocketAddr, to: SocketAddr) -> &mut Link {
        let seeder = &mut self.seeder;
        self.links.entry((from, to)).or_insert_with(|| Link {
            cut: false,
            delay: Duration::ZERO,
            drop: 0.0,
            rng: splitmix64(seeder),
        })
    }

    fn is_cut(&self, from: SocketAddr, to: SocketAddr) -> bool {
        self.isolated.contains(&from)
            || self.isolated.contains(&to)
            || self.links.get(&(from, to)).is_some_and(|l| l.cut)
    }

    /// Decides the fate of one datagram and counts it (except `Send`, counted
    /// once the underlying socket took it).
    fn decide(&mut self, from: SocketAddr, to: SocketAddr) -> Verdict {
        if self.is_cut(from, to) {
            self.stats.cut += 1;
            return Verdict::Cut;
        }
        let Some(link) = self.links.get_mut(&(from, to)) else {
            return Verdict::Send;
        };
        if link.drop > 0.0 && unit(&mut link.rng) < link.drop {
            self.stats.lost += 1;
            return Verdict::Lost;
        }
        if link.delay.is_zero() {
            return Verdict::Send;
        }
        let delay = link.delay;
        if self.in_flight >= MAX_DELAYED {
            self.stats.overflowed += 1;
            return Verdict::Overflow;
        }
        self.in_flight += 1;
        self.stats.delayed += 1;
        Verdict::Delay(delay)
    }

    /// A delayed datagram is due: releases its slot and tells whether a cut
    /// now drops it (counting it).
    fn due(&mut self, from: SocketAddr, to: SocketAddr) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        let cut = self.is_cut(from, to);
        if cut {
            self.stats.cut += 1;
        }
        cut
    }
}

impl Faults {
    /// A plan with no faults; `seed` fixes the random loss sequences.
    pub fn new(seed: u64) -> Faults {
        Faults {
            plan: Arc::new(Mutex::new(Plan {
                seeder: seed,
                links: HashMap::new(),
                isolated: HashSet::new(),
                in_flight: 0,
                stats: FaultStats::default(),
            })),
        }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wrap a socket (usually the one quinn's tokio runtime made:
    /// `quinn::TokioRuntime.wrap_udp_socket(std_socket)`): its outgoing
    /// datagrams follow the plan. Incoming datagrams pass untouched; the
    /// sender's wrapper applies the rules of their link.
    pub fn wrap(&self, inner: Arc<dyn AsyncUdpSocket>) -> Arc<dyn AsyncUdpSocket> {
        Arc::new(FaultySocket {
            inner,
            faults: self.clone(),
            local: OnceLock::new(),
            outbox: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Cuts the link `from -> to` (one direction): its datagrams are lost
    /// until [`heal`](Self::heal).
    pub fn cut(&self, from: SocketAddr, to: SocketAddr) {
        self.plan().link(from, to).cut = true;
    }

    /// Cuts the links `a -> b` and `b -> a`.
    pub fn cut_both(&self, a: SocketAddr, b: SocketAddr) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Heals a cut of the link `from -> to`; delays, loss and isolations stay.
    pub fn heal(&self, from: SocketAddr, to: SocketAddr) {
        if let Some(link) = self.plan().links.get_mut(&(from, to)) {
            link.cut = false;
        }
    }

    /// Heals the cuts of the links `a -> b` and `b -> a`.
    pub fn heal_both(&self, a: SocketAddr, b: SocketAddr) {
        self.heal(a, b);
        self.heal(b, a);
    }

    /// Heals every cut and ends every isolation; delays and loss stay.
    pub fn heal_all(&self) {
        let mut plan = self.plan();
        plan.isolated.clear();
        for link in plan.links.values_mut() {
            link.cut = false;
        }
    }

    /// Delays every datagram on the link `from -> to` by `d`, keeping their
    /// order; `Duration::ZERO` removes the delay.
    pub fn delay(&self, from: SocketAddr, to: SocketAddr, d: Duration) {
        self.plan().link(from, to).delay = d;
    }

    /// Loses each datagram on the link `from -> to` with probability
    /// `fraction`, clamped to `0.0..=1.0` (`0.0` removes the loss).
    pub fn drop_fraction(&self, from: SocketAddr, to: SocketAddr, fraction: f64) {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.plan().link(from, to).drop = fraction;
    }

    /// Cuts every link to and from `addr`, in both directions, including links
    /// to endpoints wrapped later, until [`rejoin`](Self::rejoin) or
    /// [`heal_all`](Self::heal_all).
    pub fn isolate(&self, addr: SocketAddr) {
        self.plan().isolated.insert(addr);
    }

    /// Ends the isolation of `addr`; cuts set link by link stay.
    pub fn rejoin(&self, addr: SocketAddr) {
        self.plan().isolated.remove(&addr);
    }

    /// Removes every rule: cuts, isolations, delays and loss. Datagrams
    /// already delayed are still sent when due.
    pub fn clear(&self) {
        let mut plan = self.plan();
        plan.isolated.clear();
        for link in plan.links.values_mut() {
            link.cut = false;
            link.delay = Duration::ZERO;
            link.drop = 0.0;
        }
    }

    /// What the plan did so far.
    pub fn stats(&self) -> FaultStats {
        self.plan().stats
    }

    fn decide(&self, from: SocketAddr, to: SocketAddr) -> Verdict {
        self.plan().decide(from, to)
    }

    fn count_sent(&self) {
        self.plan().stats.sent += 1;
    }
}

/// One datagram held back by a delay.
struct Delayed {
    due: tokio::time::Instant,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    contents: Vec<u8>,
}

/// Delayed datagrams of one socket, a FIFO queue per destination; a queue
/// exists exactly while a task drains it.
type Outbox = Arc<Mutex<HashMap<SocketAddr, VecDeque<Delayed>>>>;

/// The socket [`Faults::wrap`] returns.
struct FaultySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    faults: Faults,
    local: OnceLock<SocketAddr>,
    outbox: Outbox,
}

impl fmt::Debug for FaultySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultySocket")
            .field("inner", &self.inner)
            .field("local", &self.local.get())
            .finish_non_exhaustive()
    }
}

impl FaultySocket {
    fn source(&self) -> io::Result<SocketAddr> {
        if let Some(addr) = self.local.get() {
            return Ok(*addr);
        }
        let addr = self.inner.local_addr()?;
        Ok(*self.local.get_or_init(|| addr))
    }

    /// Sends one datagram of `transmit`, `contents`, following the plan.
    fn send_one(&self, from: SocketAddr, transmit: &Transmit, contents: &[u8]) -> io::Result<()> {
        let to = transmit.destination;
        match self.faults.decide(from, to) {
            Verdict::Send => {
                self.inner.try_send(&Transmit {
                    destination: to,
                    ecn: transmit.ecn,
                    contents,
                    segment_size: None,
                    src_ip: transmit.src_ip,
                })?;
                self.faults.count_sent();
            }
            Verdict::Cut | Verdict::Lost | Verdict::Overflow => {}
            Verdict::Delay(delay) => {
                let delayed = Delayed {
                    due: tokio::time::Instant::now() + delay,
                    ecn: transmit.ecn,
                    src_ip: transmit.src_ip,
                    contents: contents.to_vec(),
                };
                self.hold(from, to, delayed);
            }
        }
        Ok(())
    }

    /// Queues a delayed datagram, starting the queue's task if none runs.
    fn hold(&self, from: SocketAddr, to: SocketAddr, delayed: Delayed) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let mut plan = self.faults.plan();
            plan.in_flight = plan.in_flight.saturating_sub(1);
            plan.stats.delayed = plan.stats.delayed.saturating_sub(1);
            plan.stats.overflowed += 1;
            return;
        };
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = outbox.get_mut(&to) {
            queue.push_back(delayed);
            return;
        }
        outbox.insert(to, VecDeque::from([delayed]));
        runtime.spawn(drain(
            self.inner.clone(),
            self.faults.clone(),
            self.outbox.clone(),
            from,
            to,
        ));
    }
}

/// Sends the delayed datagrams queued for `to` when due, in order, until the
/// queue is empty; a datagram that meets a cut when due is dropped, a send
/// error loses it.
async fn drain(
    inner: Arc<dyn AsyncUdpSocket>,
    faults: Faults,
    outbox: Outbox,
    from: SocketAddr,
    to: SocketAddr,
) {
    loop {
        let next = {
            let mut outbox = outbox.lock().unwrap_or_else(PoisonError::into_inner);
            match outbox.get_mut(&to).and_then(VecDeque::pop_front) {
                Some(next) => next,
                None => {
                    outbox.remove(&to);
                    return;
                }
            }
        };
        tokio::time::sleep_until(next.due).await;
        if faults.plan().due(from, to) {
            continue;
        }
        let sent = inner.try_send(&Transmit {
            destination: to,
            ecn: next.ecn,
            contents: &next.contents,
            segment_size: None,
            src_ip: next.src_ip,
        });
        if sent.is_ok() {
            faults.count_sent();
        }
    }
}

impl AsyncUdpSocket for FaultySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let from = self.source()?;
        match transmit.segment_size {
            // Quinn sends one datagram per transmit (`max_transmit_segments`
            // is 1); split a batch anyway so faults stay per datagram. Only
            // the first datagram's error reaches the caller, which retries
            // the whole transmit on `WouldBlock`; later ones are lost.
            Some(size) if size > 0 && size < transmit.contents.len() => {
                let mut chunks = transmit.contents.chunks(size);
                if let Some(first) = chunks.next() {
                    self.send_one(from, transmit, first)?;
                }
                for chunk in chunks {
                    let _ = self.send_one(from, transmit, chunk);
                }
                Ok(())
            }
            _ => self.send_one(from, transmit, transmit.contents),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// SplitMix64: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (SplitMix64) for tests' random choices.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// A draw in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A uniform draw in `0.0..1.0`.
fn unit(state: &mut u64) -> f64 {
    (splitmix64(state) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::{
        ClientConfig, Connection, ConnectionError, Endpoint, EndpointConfig, IdleTimeout, Runtime,
        ServerConfig, TokioRuntime, TransportConfig,
    };
    use tokio::time::{timeout, Instant};

    /// `s` seconds, stretched by `TESSELLA_TIME_SCALE`.
    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s * crate::time_scale())
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn transport(idle: Duration) -> Arc<TransportConfig> {
        let mut transport = TransportConfig::default();
        transport.max_idle_timeout(Some(IdleTimeout::try_from(idle).expect("idle timeout")));
        // Quick loss recovery on loopback, also for the handshake.
        transport.initial_rtt(Duration::from_millis(20));
        Arc::new(transport)
    }

    /// A server config with a fresh self-signed certificate for `localhost`
    /// and a client config trusting it.
    fn configs(idle: Duration) -> (ServerConfig, ClientConfig) {
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server TLS");
        server_tls.alpn_protocols = vec![b"faults".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).expect("root");
        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_tls.alpn_protocols = vec![b"faults".to_vec()];
        let mut server = ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).expect("QUIC server"),
        ));
        server.transport_config(transport(idle));
        let mut client = ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).expect("QUIC client"),
        ));
        client.transport_config(transport(idle));
        (server, client)
    }

    /// Two endpoints on 127.0.0.1 over sockets wrapped by one plan.
    struct Pair {
        faults: Faults,
        server: Endpoint,
        client: Endpoint,
        server_addr: SocketAddr,
        client_addr: SocketAddr,
    }

    fn endpoint(faults: &Faults, server: Option<ServerConfig>) -> Endpoint {
        let socket = std::net::UdpSocket::bind(addr(0)).expect("bind");
        let socket = faults.wrap(TokioRuntime.wrap_udp_socket(socket).expect("tokio socket"));
        assert_eq!(socket.max_transmit_segments(), 1);
        Endpoint::new_with_abstract_socket(
            EndpointConfig::default(),
            server,
            socket,
            Arc::new(TokioRuntime),
        )
        .expect("endpoint")
    }

    fn pair(seed: u64, idle: Duration) -> Pair {
        let faults = Faults::new(seed);
        let (server_config, client_config) = configs(idle);
        let server = endpoint(&faults, Some(server_config));
        let mut client = endpoint(&faults, None);
        client.set_default_client_config(client_config);
        Pair {
            server_addr: server.local_addr().expect("server address"),
            client_addr: client.local_addr().expect("client address"),
            faults,
            server,
            client,
        }
    }

    /// Connects the client to the server: (client side, server side).
    async fn connect(pair: &Pair) -> (Connection, Connection) {
        let connecting = pair
            .client
            .connect(pair.server_addr, "localhost")
            .expect("connect");
        let client = async { connecting.await.expect("client handshake") };
        let server = async {
            let incoming = pair.server.accept().await.expect("incoming");
            incoming.await.expect("server handshake")
        };
        timeout(secs(10.0), async { tokio::join!(client, server) })
            .await
            .expect("handshake in time")
    }

    /// Sends `data` on a uni stream from `from` to `to` and returns what `to`
    /// read.
    async fn transfer(from: &Connection, to: &Connection, data: &[u8]) -> Vec<u8> {
        let send = async {
            let mut stream = from.open_uni().await.expect("open");
            stream.write_all(data).await.expect("write");
            stream.finish().expect("finish");
        };
        let recv = async {
            let mut stream = to.accept_uni().await.expect("accept");
            stream.read_to_end(1 << 20).await.expect("read")
        };
        timeout(secs(10.0), async { tokio::join!(send, recv).1 })
            .await
            .expect("transfer in time")
    }

    #[tokio::test]
    async fn without_faults_a_stream_carries_bytes() {
        let pair = pair(1, secs(5.0));
        let (client, server) = connect(&pair).await;
        assert_eq!(transfer(&client, &server, b"hello").await, b"hello");
        assert_eq!(transfer(&server, &client, b"back").await, b"back");
        let stats = pair.faults.stats();
        assert!(stats.sent > 0, "{stats:?}");
        assert_eq!(
            (stats.cut, stats.lost, stats.delayed),
            (0, 0, 0),
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn cut_both_stops_traffic_and_heal_restores_it() {
        let pair = pair(2, secs(1.0));
        let (client, server) = connect(&pair).await;
        assert_eq!(transfer(&client, &server, b"before").await, b"before");

        pair.faults.cut_both(pair.client_addr, pair.server_addr);
        // Writes are only buffered; neither side ever sees the other's stream,
        // and both connections end by idle timeout.
        let mut streams = Vec::new();
        for from in [&client, &server] {
            let mut stream = from.open_uni().await.expect("open");
            stream.write_all(b"lost").await.expect("buffered write");
            stream.finish().expect("finish");
            streams.push(stream);
        }
        let (to_server, to_client) = timeout(secs(5.0), async {
            tokio::join!(server.accept_uni(), client.accept_uni())
        })
        .await
        .expect("the connection times out in time");
        for accepted in [to_server, to_client] {
            assert!(
                matches!(accepted, Err(ConnectionError::TimedOut)),
                "{accepted:?}"
            );
        }
        assert!(pair.faults.stats().cut > 0, "{:?}", pair.faults.stats());

        pair.faults.heal_both(pair.client_addr, pair.server_addr);
        let (client, server) = connect(&pair).await;
        assert_eq!(transfer(&client, &server, b"after").await, b"after");
    }

    #[tokio::test]
    async fn a_one_way_cut_prevents_the_handshake() {
        let pair = pair(3, secs(1.0));
        pair.faults.cut(pair.client_addr, pair.server_addr);
        let connecting = pair
            .client
            .connect(pair.server_addr, "localhost")
            .expect("connect");
        let outcome = timeout(secs(5.0), connecting)
            .await
            .expect("the handshake times out in time");
        assert!(
            matches!(outcome, Err(ConnectionError::TimedOut)),
            "{outcome:?}"
        );
        // The server never heard of the client.
        assert!(timeout(Duration::from_millis(100), pair.server.accept())
            .await
            .is_err());
        let stats = pair.faults.stats();
        assert!(stats.cut > 0, "{stats:?}");
        assert_eq!(stats.sent, 0, "{stats:?}");

        pair.faults.heal(pair.client_addr, pair.server_addr);
        let (client, server) = connect(&pair).await;
        assert_eq!(transfer(&client, &server, b"healed").await, b"healed");
    }

    #[tokio::test]
    async fn lossy_links_still_carry_a_stream_intact() {
        let pair = pair(4, secs(10.0));
        pair.faults
            .drop_fraction(pair.client_addr, pair.server_addr, 0.3);
        pair.faults
            .drop_fraction(pair.server_addr, pair.client_addr, 0.3);
        let (client, server) = connect(&pair).await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        assert!(transfer(&client, &server, &data).await == data);
        let stats = pair.faults.stats();
        assert!(stats.lost > 0, "{stats:?}");
        assert!(stats.sent > 0, "{stats:?}");
    }

    #[tokio::test]
    async fn delayed_links_slow_a_round_trip() {
        let pair = pair(5, secs(5.0));
        let d = Duration::from_millis(50);
        pair.faults.delay(pair.client_addr, pair.server_addr, d);
        pair.faults.delay(pair.server_addr, pair.client_addr, d);
        let (client, server) = connect(&pair).await;

        let echo = async {
            let (mut send, mut recv) = server.accept_bi().await.expect("accept");
            let request = recv.read_to_end(1024).await.expect("request");
            send.write_all(&request).await.expect("reply");
            send.finish().expect("finish");
            // Keep the stream until the client has the reply.
            let _ = send.stopped().await;
        };
        let start = Instant::now();
        let ask = async {
            let (mut send, mut recv) = client.open_bi().await.expect("open");
            send.write_all(b"ping").await.expect("request");
            send.finish().expect("finish");
            let reply = recv.read_to_end(1024).await.expect("reply");
            (reply, start.elapsed())
        };
        let ((reply, elapsed), ()) = timeout(secs(5.0), async { tokio::join!(ask, echo) })
            .await
            .expect("round trip in time");
        assert_eq!(reply, b"ping");
        assert!(elapsed >= 2 * d, "round trip took {elapsed:?}");
        assert!(pair.faults.stats().delayed > 0, "{:?}", pair.faults.stats());
    }

    /// The decisions for `n` datagrams on `a -> b` under a plan with `seed`.
    fn drops(seed: u64, n: usize) -> Vec<bool> {
        let faults = Faults::new(seed);
        faults.drop_fraction(addr(1), addr(2), 0.3);
        (0..n)
            .map(|_| match faults.decide(addr(1), addr(2)) {
                Verdict::Lost => true,
                Verdict::Send => false,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_drops() {
        let first = drops(42, 1000);
        assert_eq!(first, drops(42, 1000));
        assert_ne!(first, drops(43, 1000));
        let lost = first.iter().filter(|d| **d).count();
        assert!((200..400).contains(&lost), "{lost} of 1000 lost at 0.3");
    }

    #[test]
    fn rules_per_link_and_isolation() {
        let faults = Faults::new(0);
        let (a, b, c) = (addr(1), addr(2), addr(3));
        faults.cut(a, b);
        assert_eq!(faults.decide(a, b), Verdict::Cut);
        assert_eq!(faults.decide(b, a), Verdict::Send);
        faults.heal(a, b);
        assert_eq!(faults.decide(a, b), Verdict::Send);

        faults.isolate(c);
        assert_eq!(faults.decide(c, a), Verdict::Cut);
        assert_eq!(faults.decide(b, c), Verdict::Cut);
        assert_eq!(faults.decide(a, b), Verdict::Send);
        faults.rejoin(c);
        assert_eq!(faults.decide(c, a), Verdict::Send);

        faults.drop_fraction(a, b, 1.0);
        assert_eq!(faults.decide(a, b), Verdict::Lost);
        faults.drop_fraction(a, b, 0.0);
        faults.delay(a, b, Duration::from_millis(5));
        assert_eq!(
            faults.decide(a, b),
            Verdict::Delay(Duration::from_millis(5))
        );
        faults.isolate(a);
        faults.cut(b, c);
        faults.heal_all();
        assert_eq!(faults.decide(b, c), Verdict::Send);
        faults.clear();
        assert_eq!(faults.decide(a, b), Verdict::Send);
        let stats = faults.stats();
        assert_eq!(
            (stats.cut, stats.lost, stats.delayed),
            (3, 1, 1),
            "{stats:?}"
        );
    }
}
