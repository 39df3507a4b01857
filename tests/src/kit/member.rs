//! One member of a dev cluster as its own process (`tessella-node dev
//! --nodes N --member I`), so tests can `kill -9` it and start it again on
//! the same data dir.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
