//! `tessella-node dev` run as a user runs it: a process that prints each
//! node's admin URL and an admin token, answers `/ready` on every node, and
//! stops cleanly (exit 0, "stopping") on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound on any wait; only reached when something is broken.
const BOUND: Duration = Duration::from_secs(30);

/// Kills the child if the test fails before it stops it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Status code and body of `GET path`, or `None` if the server cannot be
/// reached (yet).
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The next stdout line, within what is left of `deadline`.
fn next_line(lines: &mpsc::Receiver<String>, deadline: Instant, seen: &[String]) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    lines
        .recv_timeout(left)
        .unwrap_or_else(|e| panic!("no further stdout line ({e}); so far: {seen:#?}"))
}

#[test]
fn dev_command_starts_answers_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("dev");
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");
    let child = Command::new(env!("CARGO_BIN_EXE_tessella-node"))
        .args([
            "dev",
            "--nodes",
            "2",
            "--admin-base-port",
            "0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawn tessella-node dev");
    let mut child = Guard(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let log = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();

    // Start-up output, up to "ready".
    let deadline = Instant::now() + BOUND;
    let mut seen: Vec<String> = Vec::new();
    while !seen.last().is_some_and(|l| l.starts_with("ready;")) {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "tessella-node dev exited early ({status}); stdout {seen:#?}; stderr:\n{}",
                log()
            );
        }
        seen.push(next_line(&lines, deadline, &seen));
    }
    let admins: Vec<SocketAddr> = (0..2)
        .map(|i| {
            let line = seen
                .iter()
                .find(|l| l.starts_with(&format!("node {i}: id ")))
                .unwrap_or_else(|| panic!("no line for node {i} in {seen:#?}"));
            assert!(line.contains(" quic 127.0.0.1:"), "{line}");
            line.rsplit_once(" admin http://")
                .and_then(|(_, a)| a.parse().ok())
                .unwrap_or_else(|| panic!("no admin URL in {line:?}"))
        })
        .collect();
    let token = seen
        .iter()
        .find_map(|l| l.strip_prefix("admin token: "))
        .expect("an admin token line")
        .to_string();
    assert_eq!(
        std::fs::read_to_string(data_dir.join("admin.jwt")).expect("admin.jwt in the data dir"),
        token
    );
    assert!(
        seen.iter().any(|l| l.contains("DEV MODE")),
        "the dev banner: {seen:#?}"
    );

    // Every node answers /ready with 200.
    for addr in &admins {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some((200, body)) = get(*addr, "/ready", None) {
                assert!(body.contains("\"ready\":true"), "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr}/ready never answered 200; stderr:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, body) = get(*addr, "/v1/status", Some(&token)).expect("status answers");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"mode\":\"dev\""), "{body}");
        assert!(body.contains("\"network\":\"tessella-dev\""), "{body}");
    }

    // SIGTERM: a clean stop.
    let pid = child.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {pid}");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tessella-node dev did not stop within {BOUND:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}; stderr:\n{}", log());
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().any(|l| l == "stopping"),
        "printed \"stopping\": {rest:#?}"
    );
    // The admin API is gone with the process.
    assert!(
        get(admins[0], "/ready", None).is_none(),
        "admin port closed"
    );
}
