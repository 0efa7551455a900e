//! `llmux`: the llmux router as a command.
//!
//! - `llmux serve --config FILE [--listen ADDR] [--log-format json|logfmt|off] [--insecure-no-auth] [--watch]`
//! - `llmux check --config FILE`
//! - `llmux route --config FILE MODEL [--routing JSON] [--json]`
//! - `llmux route --url http://HOST:PORT MODEL [...]`: the running gateway's plan
//! - `llmux help`, `llmux --help`, `llmux --version`
//!
//! Output goes through [`Out`]: a closed pipe (`llmux route --json | head -1`)
//! ends the command quietly instead of panicking.

use llmux_gateway::{config, dashboard, keys, record, reload, say, serve, server, tls};

use record::LogFormat;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const USAGE: &str = "llmux: an LLM router with OpenAI- and Anthropic-compatible endpoints

usage:
  llmux serve --config FILE [--listen ADDR] [--log-format json|logfmt|off] [--insecure-no-auth] [--watch]
  llmux check --config FILE
  llmux route --config FILE MODEL [--routing JSON] [--provider JSON] [--json]
  llmux route --url http://HOST:PORT MODEL [--stream] [--routing JSON] [--provider JSON] [--json]
  llmux help | --help | -h
  llmux --version | -V

commands:
  serve   run the gateway (ADDR: 127.0.0.1:4000, localhost:4000, [::1]:4000)
  check   validate the config: every error and warning with its JSON path
  route   show how a request for MODEL would be routed, without sending it
          (--url: ask a running gateway, which knows live latencies; the
          key, if it has keys, comes from the LLMUX_API_KEY variable)

options:
  -c, --config FILE     the JSON config (the library reads the same file)
  --listen ADDR         overrides gateway.listen
  --log-format FORMAT   one line per request on stderr: logfmt (default), json or off
  --insecure-no-auth    allow a non-loopback address without gateway.keys
  --watch               serve: reload the catalog when the config file changes
                        (SIGHUP and POST /admin/reload always do)
  --routing JSON        route: a provider.routing object, e.g. '{\"type\":\"priority\"}'
  --provider JSON       route: a whole provider object (preferences), e.g. '{\"zdr\":true}'
  --json                route: the full plan as JSON
  --url URL             route: the running gateway at URL instead of --config
  --stream              route: plan a streaming request (ranked by first-token latency)";

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Writes to stdout without panicking on a closed pipe (`println!`
/// would): after the first failed write, the rest is dropped.
struct Out {
    broken: bool,
}

impl Out {
    fn new() -> Out {
        Out { broken: false }
    }

    fn line(&mut self, text: impl std::fmt::Display) {
        if !self.broken {
            let mut o = std::io::stdout().lock();
            self.broken = writeln!(o, "{text}").and_then(|_| o.flush()).is_err();
        }
    }
}

/// What the command line asks for.
enum Cli {
    Run(Args),
    Help,
    Version,
}

/// The parsed command line.
#[derive(Default)]
struct Args {
    command: String,
    config: Option<PathBuf>,
    listen: Option<String>,
    log_format: Option<String>,
    insecure_no_auth: bool,
    routing: Option<String>,
    /// `llmux route --provider JSON`.
    provider: Option<String>,
    json: bool,
    model: Option<String>,
    /// `llmux route --url`.
    url: Option<String>,
    /// `llmux route --stream`: plan a streaming request.
    stream: bool,
    /// `llmux serve --watch`.
    watch: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Cli, String> {
    let mut a = Args {
        command: it.next().ok_or("a command is required")?,
        ..Args::default()
    };
    match a.command.as_str() {
        "serve" | "check" | "route" => {}
        "help" | "-h" | "--help" => return Ok(Cli::Help),
        "-V" | "--version" | "version" => return Ok(Cli::Version),
        other => {
            return Err(format!(
                "unknown command `{other}`: the commands are serve, check and route"
            ))
        }
    }
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--config" | "-c" => a.config = Some(PathBuf::from(value("--config")?)),
            "--listen" => a.listen = Some(value("--listen")?),
            "--log-format" => a.log_format = Some(value("--log-format")?),
            "--routing" => a.routing = Some(value("--routing")?),
            "--provider" => a.provider = Some(value("--provider")?),
            "--url" if a.command == "route" => a.url = Some(value("--url")?),
            "--stream" if a.command == "route" => a.stream = true,
            "--insecure-no-auth" => a.insecure_no_auth = true,
            "--json" => a.json = true,
            "--watch" => a.watch = true,
            "-h" | "--help" => return Ok(Cli::Help),
            "-V" | "--version" => return Ok(Cli::Version),
            f if f.starts_with('-') => return Err(format!("unknown option `{f}`")),
            _ if a.command == "route" && a.model.is_none() => a.model = Some(arg),
            _ => return Err(format!("unexpected argument `{arg}`")),
        }
    }
    if a.config.is_none() && a.url.is_none() {
        return Err("--config FILE is required".into());
    }
    if a.command == "route" && a.model.is_none() {
        return Err("route needs a MODEL".into());
    }
    Ok(Cli::Run(a))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Cli::Run(a)) => a,
        Ok(Cli::Help) => {
            Out::new().line(USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Version) => {
            Out::new().line(format_args!("llmux {VERSION}"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say(e);
            say("run `llmux --help` for the commands and their options");
            return ExitCode::from(2);
        }
    };
    match args.command.as_str() {
        "serve" => serve(&args),
        "check" => check(&args),
        _ => route(&args),
    }
}

fn fail(lines: &[String]) -> ExitCode {
    for l in lines {
        say(l);
    }
    ExitCode::from(1)
}

fn load(args: &Args) -> Result<config::Loaded, ExitCode> {
    config::load(args.config.as_deref().expect("checked")).map_err(|e| fail(&e))
}

/// `llmux check`: every problem once, with its JSON path, or the catalog
/// and any warnings.
fn check(args: &Args) -> ExitCode {
    let path = args.config.as_deref().expect("checked");
    let mut out = Out::new();
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(errors) => {
            out.line(format_args!(
                "{}: {} error(s)",
                path.display(),
                errors.len()
            ));
            for e in &errors {
                out.line(format_args!("  {e}"));
            }
            return ExitCode::from(1);
        }
    };
    let (c, g) = (&loaded.catalog, &loaded.gateway);
    out.line(format_args!("{}: ok", path.display()));
    for w in &c.warnings {
        out.line(format_args!("  warning: {w}"));
    }
    out.line(format_args!(
        "gateway: listen {}, {} caller key(s), body limit {} bytes, drain {} ms",
        g.listen,
        g.keys.len(),
        g.max_body_bytes,
        g.drain_ms
    ));
    out.line("providers:");
    for p in &c.providers {
        out.line(format_args!(
            "  {} ({}) {}",
            p.slug,
            p.protocol.as_str(),
            p.url()
        ));
    }
    out.line("models:");
    for m in &c.models {
        let aliases = m.aliases.join(", ");
        let aka = if aliases.is_empty() {
            String::new()
        } else {
            format!(" (aliases: {aliases})")
        };
        out.line(format_args!("  {}{aka}", m.slug));
        for &e in &m.endpoints {
            let ep = &c.endpoints[e];
            out.line(format_args!(
                "    {}  upstream {}  ${}/${} per M tokens{}{}",
                ep.id,
                ep.upstream_model,
                ep.price_prompt,
                ep.price_completion,
                ep.context_window
                    .map(|w| format!("  context {w}"))
                    .unwrap_or_default(),
                ep.facts_line(),
            ));
        }
    }
    ExitCode::SUCCESS
}

fn engine(
    catalog: llmux::catalog::Catalog,
    gateway: &config::GatewayConfig,
) -> Result<llmux::Engine, ExitCode> {
    let e = llmux::Engine::new(catalog).map_err(|e| fail(&[e.to_string()]))?;
    if let Some(f) = &gateway.health_file {
        if let Ok(text) = std::fs::read_to_string(f) {
            if let Err(err) = e.import_health(&text) {
                say(format_args!("ignoring health file {}: {err}", f.display()));
            }
        }
    }
    Ok(e)
}

/// `llmux route`: the ranked candidates and why, without sending anything.
fn route(args: &Args) -> ExitCode {
    let model = args.model.as_deref().expect("checked");
    let body = match dashboard::plan_body(
        model,
        args.stream,
        args.routing.as_deref(),
        args.provider.as_deref(),
    ) {
        Ok(b) => b,
        Err(e) => return fail(&[format!("--{e}")]),
    };
    let plan = if let Some(url) = &args.url {
        match remote_plan(url, model, args) {
            Ok(p) => p,
            Err(e) => return fail(&[e]),
        }
    } else {
        let loaded = match load(args) {
            Ok(l) => l,
            Err(c) => return c,
        };
        let eng = match engine(loaded.catalog, &loaded.gateway) {
            Ok(e) => e,
            Err(c) => return c,
        };
        match eng.plan(llmux::Protocol::OpenAi, body.as_bytes()) {
            Ok(p) => p,
            Err(e) => return fail(&[e.to_string()]),
        }
    };
    print_plan(args, &plan)
}

/// The plan of the gateway at `base` (`GET /v1/route`), with the key from
/// `LLMUX_API_KEY` when set. Errors name the gateway and what it said.
fn remote_plan(base: &str, model: &str, args: &Args) -> Result<llmux::Plan, String> {
    let base = base.trim_end_matches('/');
    let mut query = vec![("model", model)];
    if args.stream {
        query.push(("stream", "true"));
    }
    if let Some(r) = &args.routing {
        query.push(("routing", r));
    }
    if let Some(p) = &args.provider {
        query.push(("provider", p));
    }
    let key = std::env::var("LLMUX_API_KEY").ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (status, text) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let mut req = client.get(format!("{base}/v1/route")).query(&query);
        if let Some(k) = &key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the gateway at {base}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("the gateway at {base} broke off its answer: {e}"))?;
        Ok::<_, String>((status, text))
    })?;
    if status != 200 {
        let why = record::error_message(&text)
            .map(|c| c.into_owned())
            .unwrap_or_else(|| text.chars().take(300).collect());
        let hint = if status == 401 {
            " (set LLMUX_API_KEY to a caller key)"
        } else {
            ""
        };
        return Err(format!(
            "the gateway at {base} answered {status}: {why}{hint}"
        ));
    }
    serde_json::from_str(&text)
        .map_err(|e| format!("the gateway at {base} sent a plan llmux cannot read: {e}"))
}

fn print_plan(args: &Args, plan: &llmux::Plan) -> ExitCode {
    let mut out = Out::new();
    if args.json {
        out.line(serde_json::to_string_pretty(&plan).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    for m in &plan.models {
        out.line(format_args!("{} (policy {})", m.model, m.policy));
        for c in &m.candidates {
            out.line(format_args!("  {}", explain_line(c)));
        }
    }
    // what the provider preferences removed or ranked last.
    for f in &plan.filtered {
        let what = if f.removed { "filtered" } else { "ranked last" };
        let why = f.reason.trim_end_matches(" (ranked last)");
        out.line(format_args!("  {what}: {} ({why})", f.endpoint));
    }
    if let Some(e) = &plan.error {
        out.line(format_args!("{}: {}", e.error_kind, e.message));
    }
    ExitCode::SUCCESS
}

fn explain_line(c: &llmux::PlanCandidate) -> String {
    let latency = match c.first_token_ms {
        Some(ms) => format!("first token {ms:.0} ms (measured)"),
        None => format!("first token {:.0} ms (prior, unmeasured)", c.prior_ms),
    };
    let tput = c
        .throughput_tps
        .map(|t| format!("{t:.0} tok/s"))
        .unwrap_or_else(|| "unmeasured".into());
    format!(
        "{}. {}  [{}]  {}, {} in flight -> cost {:.0}; price ${}/${} per M; throughput {}; circuit {}{}{}",
        c.rank,
        c.endpoint,
        c.protocol.as_str(),
        latency,
        c.in_flight,
        c.latency_cost_ms,
        Number(c.price.prompt),
        Number(c.price.completion),
        tput,
        c.circuit.as_str(),
        if c.available { "" } else { "; unavailable (moved to the back)" },
        if c.sticky { "; sticky" } else { "" },
    )
}

/// A number as JSON writes it (`3.0`, `0.25`), as the plan's JSON shows it.
struct Number(f64);

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::Number::from_f64(self.0) {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "null"),
        }
    }
}

/// `llmux serve`.
fn serve(args: &Args) -> ExitCode {
    let config::Loaded {
        catalog,
        mut gateway,
    } = match load(args) {
        Ok(l) => l,
        Err(c) => return c,
    };
    if let Some(l) = &args.listen {
        match config::listen_addr(l) {
            Ok(a) => gateway.listen = a,
            Err(e) => return fail(&[format!("--listen: {e}")]),
        }
    }
    for w in &catalog.warnings {
        say(format_args!("warning: {w}"));
    }
    let g = &gateway;
    if g.keys.is_empty() && !g.listen.ip().is_loopback() && !args.insecure_no_auth {
        return fail(&[format!(
            "refusing to listen on {} without caller keys: set gateway.keys, listen on 127.0.0.1, or pass --insecure-no-auth",
            g.listen
        )]);
    }
    let log = match args.log_format.as_deref() {
        None | Some("logfmt") => LogFormat::Logfmt,
        Some("json") => LogFormat::Json,
        Some("off") => LogFormat::Off,
        Some(other) => {
            return fail(&[format!(
                "--log-format: `{other}` is not json, logfmt or off"
            )])
        }
    };
    let eng = match engine(catalog, &gateway) {
        Ok(e) => Arc::new(e),
        Err(c) => return c,
    };
    let prom = match metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ])
        .and_then(|b| b.install_recorder())
    {
        Ok(h) => h,
        Err(e) => return fail(&[format!("cannot set up metrics: {e}")]),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmux-http")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&[format!("cannot start the runtime: {e}")]),
    };
    let health_file = gateway.health_file.clone();
    let path = args.config.clone().unwrap_or_default();
    let keys = std::mem::take(&mut gateway.keys);
    let reloader = Arc::new(reload::Reloader::new(
        path,
        eng.clone(),
        &gateway,
        (log, args.insecure_no_auth),
        keys,
    ));
    let code = rt.block_on(run(gateway, eng.clone(), prom, log, (reloader, args.watch)));
    drop(rt);
    if let Some(f) = &health_file {
        if let Err(e) = std::fs::write(f, eng.export_health()) {
            say(format_args!(
                "cannot write health file {}: {e}",
                f.display()
            ));
        }
    }
    code
}

async fn run(
    g: config::GatewayConfig,
    eng: Arc<llmux::Engine>,
    prom: metrics_exporter_prometheus::PrometheusHandle,
    log: LogFormat,
    (reloader, watch): (Arc<reload::Reloader>, bool),
) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(g.listen).await {
        Ok(l) => l,
        Err(e) => return fail(&[format!("cannot listen on {}: {e}", g.listen)]),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(&[format!("cannot read the listening address: {e}")]),
    };
    let tls = match &g.tls {
        Some(files) => match tls::Tls::load(files) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => return fail(&[e]),
        },
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Out::new().line(format_args!("llmux: listening on {scheme}://{addr}"));
    if let Some(t) = &tls {
        t.reload_on_sighup();
    }
    spawn_upkeep(prom.clone());
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let keyring = match keys::Keyring::new(g.store.clone(), &eng) {
        Ok(k) => k,
        Err(e) => return fail(&[format!("gateway.budgets: {e}")]),
    };
    let app = Arc::new(server::App {
        keyring,
        engine: eng,
        keys: reloader.keys.clone(),
        knobs: reloader.knobs.clone(),
        log,
        prom,
        cancel_all: cancel_rx,
        started: SystemTime::now(),
        board: dashboard::Board::default(),
        reloader: Some(reloader.clone()),
    });
    let edge_limits = reloader.limits.clone();
    reload::spawn_triggers(reloader, watch);
    let drain = Duration::from_millis(g.drain_ms);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // On SIGTERM/SIGINT: stop accepting, let requests finish for the drain
    // time, then cancel what is left.
    tokio::spawn(async move {
        shutdown_signal().await;
        say(format_args!(
            "shutting down, draining for up to {} ms",
            drain.as_millis()
        ));
        let _ = stop_tx.send(());
        tokio::time::sleep(drain).await;
        let _ = cancel_tx.send(true);
    });
    let edge = serve::EdgeConfig {
        limits: edge_limits,
        tls,
        log,
        close_wait: drain + Duration::from_secs(2),
    };
    serve::run(listener, server::router(app), edge, async move {
        let _ = stop_rx.await;
    })
    .await;
    say("stopped");
    ExitCode::SUCCESS
}

/// The recorder keeps every histogram sample until something drains it; a
/// scrape does, and so does this, every 5 s, for the many deployments that
/// never scrape (issue 18: memory grew with every request).
fn spawn_upkeep(upkeep: metrics_exporter_prometheus::PrometheusHandle) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
