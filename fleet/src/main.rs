//! `llmux-fleet`: starts mock upstream servers and prints where they listen.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use llmux_fleet::{Behavior, MockServer};
use serde::{Deserialize, Serialize};

const USAGE: &str = "\
llmux-fleet: mock OpenAI / Anthropic upstream servers on 127.0.0.1

USAGE:
    llmux-fleet --servers a,b,c            one server per name, default behavior
    llmux-fleet --config '<json>'          {\"servers\":[{\"name\":\"a\",\"behavior\":{...}}]}
    llmux-fleet --config-file PATH         same JSON, read from a file

OPTIONS:
    --exit-on-stdin-eof    exit when stdin reaches EOF (otherwise serve until killed);
                           for a parent holding a pipe: ignored when stdin is a
                           terminal, which llmux-fleet never reads (a background
                           job reading it would be stopped by SIGTTIN)
    -h, --help             print this help

Once every server listens, one JSON line is printed to stdout:
    {\"servers\":[{\"name\":\"a\",\"port\":1234,\"base_url\":\"http://127.0.0.1:1234\"}]}

Each server answers POST .../chat/completions (OpenAI) and POST .../messages
(Anthropic), and the control endpoints GET /_mock/requests, GET|POST
/_mock/behavior, POST /_mock/reset, GET /_mock/health. Behavior JSON keys:
status, error_body, retry_after, retry_after_ms, extra_headers,
headers_delay_ms, first_token_delay_ms, chunk_delay_ms, chunks, text,
completion_tokens, prompt_tokens, stop_reason, tool_calls, arg_fragment_len,
thinking, require_key, fault. A request body field \"mock\" overrides them for
one request (\"mock\":{\"servers\":{\"NAME\":{...}}} for one server only).
";

#[derive(Deserialize)]
struct Config {
    servers: Vec<ServerConfig>,
}

#[derive(Deserialize)]
struct ServerConfig {
    name: String,
    #[serde(default)]
    behavior: Behavior,
}

/// The line printed on stdout (field order as documented).
#[derive(Serialize)]
struct Listing {
    servers: Vec<Listed>,
}

#[derive(Serialize)]
struct Listed {
    name: String,
    port: u16,
    base_url: String,
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("llmux-fleet: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut specs: Option<Vec<ServerConfig>> = None;
    let mut exit_on_eof = false;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--exit-on-stdin-eof" => exit_on_eof = true,
            "--servers" => match value("--servers") {
                Ok(v) => {
                    let list: Vec<ServerConfig> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| ServerConfig {
                            name: s.to_string(),
                            behavior: Behavior::default(),
                        })
                        .collect();
                    specs.get_or_insert_with(Vec::new).extend(list);
                }
                Err(e) => return fail(&e),
            },
            "--config" | "--config-file" => {
                let v = match value(&flag) {
                    Ok(v) => v,
                    Err(e) => return fail(&e),
                };
                let text = if flag == "--config" {
                    v
                } else {
                    match std::fs::read_to_string(&v) {
                        Ok(t) => t,
                        Err(e) => return fail(&format!("cannot read {v}: {e}")),
                    }
                };
                match serde_json::from_str::<Config>(&text) {
                    Ok(c) => specs.get_or_insert_with(Vec::new).extend(c.servers),
                    Err(e) => return fail(&format!("invalid config JSON: {e}")),
                }
            }
            other => return fail(&format!("unknown argument {other:?}")),
        }
    }
    let Some(specs) = specs.filter(|s| !s.is_empty()) else {
        return fail("no servers given (use --servers or --config)");
    };

    let mut servers = Vec::new();
    for spec in specs {
        match MockServer::start(&spec.name, spec.behavior) {
            Ok(s) => servers.push(s),
            Err(e) => {
                eprintln!("llmux-fleet: cannot start server {:?}: {e}", spec.name);
                return ExitCode::FAILURE;
            }
        }
    }
    let listing = Listing {
        servers: servers
            .iter()
            .map(|s| Listed {
                name: s.name().to_string(),
                port: s.port(),
                base_url: s.base_url(),
            })
            .collect(),
    };
    let line = serde_json::to_string(&listing).unwrap_or_default();
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }

    if exit_on_eof && std::io::stdin().is_terminal() {
        eprintln!(
            "llmux-fleet: stdin is a terminal: --exit-on-stdin-eof ignored, serving until killed"
        );
    } else if exit_on_eof {
        let mut sink = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        drop(servers);
        return ExitCode::SUCCESS;
    }
    loop {
        std::thread::park();
    }
}
