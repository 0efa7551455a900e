//! The mock upstream fleet for the benchmark: the `llmux-fleet` binary as a
//! child process pinned to its own CPU (so the mock's runtime threads do not
//! compete with the engine), or, when the binary is missing, in-process
//! `MockServer`s. Either way it is driven through the HTTP control endpoints
//! (`/_mock/behavior`, `/_mock/reset`, `/_mock/requests`).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Fleet {
    child: Option<Child>,
    _inproc: Vec<llmux_fleet::MockServer>,
    ports: BTreeMap<String, u16>,
    /// How the fleet runs, for the report.
    pub mode: String,
}

fn fleet_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LLMUX_FLEET_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    // The bench runs as target/<profile>/deps/llmux-<hash>.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let p = profile_dir.join("llmux-fleet");
    p.is_file().then_some(p)
}

impl Fleet {
    /// Starts one server per `(name, behavior)`; pins the child to `cpu`.
    pub fn start(servers: &[(&str, Value)], cpu: Option<usize>) -> Fleet {
        let spec = json!({"servers": servers.iter()
            .map(|(n, b)| json!({"name": n, "behavior": b}))
            .collect::<Vec<_>>()});
        if let Some(bin) = fleet_binary() {
            let mut cmd = Command::new(&bin);
            cmd.arg("--config")
                .arg(spec.to_string())
                .arg("--exit-on-stdin-eof")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            if let Some(cpu) = cpu {
                use std::os::unix::process::CommandExt;
                // SAFETY: the closure only makes the sched_setaffinity
                // syscall on plain stack data (async-signal-safe).
                unsafe {
                    cmd.pre_exec(move || {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_ZERO(&mut set);
                        libc::CPU_SET(cpu, &mut set);
                        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                        Ok(())
                    });
                }
            }
            match cmd.spawn() {
                Ok(mut child) => {
                    let mut line = String::new();
                    let out = child.stdout.take().expect("piped stdout");
                    let _ = BufReader::new(out).read_line(&mut line);
                    let listing: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    let mut ports = BTreeMap::new();
                    for s in listing["servers"].as_array().into_iter().flatten() {
                        if let (Some(n), Some(p)) = (s["name"].as_str(), s["port"].as_u64()) {
                            ports.insert(n.to_string(), p as u16);
                        }
                    }
                    if ports.len() == servers.len() {
                        let mode = match cpu {
                            Some(c) => format!("child process {} pinned to CPU {c}", bin.display()),
                            None => format!("child process {} (not pinned)", bin.display()),
                        };
                        return Fleet {
                            child: Some(child),
                            _inproc: Vec::new(),
                            ports,
                            mode,
                        };
                    }
                    eprintln!("bench: llmux-fleet printed {line:?}; using in-process servers");
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Err(e) => eprintln!("bench: cannot start {}: {e}", bin.display()),
            }
        } else {
            eprintln!(
                "bench: target/release/llmux-fleet not found (run `cargo build --release -p llmux-fleet`); \
                 using in-process mock servers, sharing CPUs with the engine"
            );
        }
        let mut inproc = Vec::new();
        let mut ports = BTreeMap::new();
        for (n, b) in servers {
            let beh = llmux_fleet::Behavior::from_json(&b.to_string()).expect("behavior JSON");
            let s = llmux_fleet::MockServer::start(n, beh).expect("start mock server");
            ports.insert(n.to_string(), s.port());
            inproc.push(s);
        }
        Fleet {
            child: None,
            _inproc: inproc,
            ports,
            mode: "in-process MockServer (llmux-fleet binary not found; not pinned)".into(),
        }
    }

    /// The child's pid (None for in-process servers).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(name))
    }

    pub fn names(&self) -> Vec<String> {
        self.ports.keys().cloned().collect()
    }

    pub fn set_behavior(&self, name: &str, b: &Value) {
        let (status, body) = control(
            self.port(name),
            "POST",
            "/_mock/behavior",
            Some(&b.to_string()),
        )
        .unwrap_or_else(|e| panic!("mock {name}: set behavior: {e}"));
        assert_eq!(status, 200, "mock {name}: set behavior: {body}");
    }

    /// Forgets recorded requests and restores the start behavior.
    pub fn reset(&self, name: &str) {
        let _ = control(self.port(name), "POST", "/_mock/reset", Some("{}"));
    }

    pub fn reset_all(&self) {
        for n in self.names() {
            self.reset(&n);
        }
    }

    /// Every request the server recorded since its last reset.
    pub fn requests(&self, name: &str) -> Vec<Value> {
        let (_, body) = control(self.port(name), "GET", "/_mock/requests", None)
            .unwrap_or_else(|e| panic!("mock {name}: requests: {e}"));
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub fn request_count(&self, name: &str) -> usize {
        self.requests(name).len()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // --exit-on-stdin-eof
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                }
            }
        }
    }
}

/// One HTTP/1.1 control call with `connection: close`; (status, body).
fn control(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, rest.to_string()))
}
