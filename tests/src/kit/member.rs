//! One member of a dev cluster as its own process (`tessella-node dev
//! --nodes N --member I`), so tests can `kill -9` it and start it again on
//! the same data dir.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// A running member process. Killed (SIGKILL) when dropped.
pub struct Member {
    child: Child,
    /// What the member printed about itself: `node I: id ... quic ... admin ...`.
    pub line: String,
    /// Its node id, hex.
    pub node_id: String,
    /// Its admin API base URL's address (`127.0.0.1:port`).
    pub admin: String,
}

/// The `tessella-node` binary cargo built for the integration tests.
pub fn node_binary() -> PathBuf {
    // Integration tests live in target/<profile>/deps; the binary one up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("tessella-node");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo build -p tessella-node` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

impl Member {
    /// Start member `index` of an `nodes`-node cluster on `data_dir`, with
    /// QUIC ports from `base_port` and admin ports from `admin_base_port`,
    /// and wait (up to `wait`) until it printed its identity.
    pub fn start(
        data_dir: &Path,
        nodes: usize,
        index: usize,
        base_port: u16,
        admin_base_port: u16,
        wait: Duration,
    ) -> Member {
        let mut child = Command::new(node_binary())
            .args(["dev", "--nodes", &nodes.to_string()])
            .args(["--member", &index.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--base-port", &base_port.to_string()])
            .args(["--admin-base-port", &admin_base_port.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tessella-node dev --member");
        let stdout = child.stdout.take().expect("member stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("node ") && tx.send(line).is_err() {
                    return;
                }
            }
        });
        let line = match rx.recv_timeout(wait) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("member {index} did not print its identity within {wait:?}");
            }
        };
        let word_after = |key: &str| {
            line.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        let node_id = word_after("id");
        let admin = word_after("admin")
            .trim_start_matches("http://")
            .to_string();
        Member {
            child,
            line,
            node_id,
            admin,
        }
    }

    /// SIGKILL, as `kill -9` would: no departure, no clean close.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the process freezes (its sockets stay open, the kernel still
    /// accepts connections into the listen backlog) until [`Member::cont`].
    pub fn stop(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT: a stopped process runs on.
    pub fn cont(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, sig: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        signal::kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on a loopback HTTP server with a bearer `token`; returns the
/// status code and body. Minimal blocking HTTP/1.1 (the admin API speaks
/// it), with a 5 s timeout.
pub fn http_get(addr: &str, path: &str, token: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, token, None, Duration::from_secs(5)).map_err(HttpError::into_io)
}

/// How an [`http_request`] failed.
#[derive(Debug)]
pub enum HttpError {
    /// Nothing was sent: the connection was refused or not made in time, so
    /// the server cannot have seen the request.
    NotSent(std::io::Error),
    /// The request may have reached the server (a timeout, a reset, a
    /// connection closed without a whole answer): its effect is unknown.
    Lost(std::io::Error),
}

impl HttpError {
    /// The underlying error.
    pub fn into_io(self) -> std::io::Error {
        match self {
            HttpError::NotSent(e) | HttpError::Lost(e) => e,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::NotSent(e) => write!(f, "not sent: {e}"),
            HttpError::Lost(e) => write!(f, "outcome unknown: {e}"),
        }
    }
}

/// `method path` on a loopback HTTP server with a bearer `token` and an
/// optional JSON `body`; returns the status code and body. Minimal blocking
/// HTTP/1.1 on a fresh connection (`Connection: close`); the whole exchange,
/// connecting included, ends within `timeout`.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    use std::io::{Error, ErrorKind, Read as _, Write as _};
    let deadline = Instant::now() + timeout;
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| HttpError::NotSent(Error::new(ErrorKind::InvalidInput, e)))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).map_err(HttpError::NotSent)?;
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(HttpError::Lost(Error::new(
                ErrorKind::TimedOut,
                "deadline passed",
            )))
        } else {
            Ok(d)
        }
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n"
    )
    .into_bytes();
    if let Some(body) = body {
        req.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body.unwrap_or_default());
    s.set_write_timeout(Some(left()?))
        .map_err(HttpError::Lost)?;
    s.write_all(&req).map_err(HttpError::Lost)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        s.set_read_timeout(Some(left()?)).map_err(HttpError::Lost)?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(HttpError::Lost(e)),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            HttpError::Lost(Error::new(
                ErrorKind::UnexpectedEof,
                "the connection closed without a status line",
            ))
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The first port from `from` (in steps of 10) with `n` consecutive free
/// UDP and TCP ports on loopback, for member processes that need fixed
/// ports. Callers start from a base derived from the process id so that
/// parallel test binaries do not collide.
pub fn free_ports(n: u16, from: u16) -> u16 {
    let mut base = from;
    loop {
        let free = (0..n).all(|i| {
            std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
        });
        if free {
            return base;
        }
        base += 10;
    }
}
