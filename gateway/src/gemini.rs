//! Google's Gemini API at the gateway, for the `google-genai` SDKs and
//! Gemini CLI (mounted at the root and under `/api` like every route):
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /v1beta/models/{model}:generateContent` | a `GenerateContentResponse` |
//! | `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` | SSE, one response per `data:` event |
//! | `POST /v1beta/models/{model}:streamGenerateContent` | the same responses as one JSON array (gathered, then sent) |
//! | `POST /v1beta/models/{model}:countTokens` | `{"totalTokens": N}` (an estimate: JSON bytes / 4) |
//! | `GET /v1beta/models`, `GET /v1beta/models/{model}` | Google's model list / model |
//! | the same under `/v1/models/...` | (`GET /v1/models` itself: Google's list when `x-goog-api-key` or `x-goog-api-client` is sent; `GET /v1/models/{vendor}/{name}/endpoints` stays llmux's endpoint listing) |
//! | `POST /vertex-ai/v1/publishers/{publisher}/models/{model}:...` | the same methods; `{publisher}/{model}` is the slug |
//!
//! `{model}` is a catalog slug, its `/` given as is or escaped (`%2F`), with
//! an optional `:provider` pin: the method is what follows the last colon
//! when that names a method. Keys as `Authorization: Bearer`, `x-api-key`,
//! `x-goog-api-key` or `?key=` (which no log line shows: lines carry the
//! path, never the query). Errors are Google's envelope.

use crate::config::CallerKey;
use crate::server::{self, App, St};
use axum::body::Body;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use llmux::{EventKind, Protocol, TerminalKind};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

type Result<T, E = crate::error::GatewayError> = std::result::Result<T, E>;

const GEMINI: Protocol = Protocol::Gemini;

/// The Gemini routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1beta/models", get(list))
        .route("/v1beta/models/{*rest}", get(get_model).post(generate))
        .route("/v1/models/{*rest}", get(get_model).post(generate))
        .route(
            "/vertex-ai/v1/publishers/{publisher}/models/{*rest}",
            post(vertex),
        )
}

/// A Gemini method in the URL.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    Generate,
    Stream,
    CountTokens,
}

/// `slug[:provider]:method` -> (slug with its pin, method): the method is
/// after the last colon, when that names one.
fn split_method(rest: &str) -> Option<(&str, Method)> {
    let (model, method) = rest.rsplit_once(':')?;
    let m = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "countTokens" => Method::CountTokens,
        _ => return None,
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    (!model.is_empty()).then_some((model, m))
}

/// The `key` (and whether `alt=sse`) of a query string.
fn query_key(query: Option<&str>) -> (Option<&str>, bool) {
    let mut key = None;
    let mut sse = false;
    for kv in query.unwrap_or("").split('&') {
        match kv.split_once('=') {
            Some(("key", k)) => key = Some(k),
            Some(("alt", "sse")) => sse = true,
            _ => {}
        }
    }
    (key, sse)
}

/// The caller's key (`None` when the gateway has none): a header, else
/// `?key=`.
fn authorize(
    app: &App,
    h: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<std::sync::Arc<CallerKey>>> {
    let header = ["x-goog-api-key", "x-api-key"]
        .iter()
        .find_map(|n| h.get(*n))
        .map(HeaderValue::as_bytes)
        .or_else(|| {
            let v = h.get("authorization")?.as_bytes();
            v.strip_prefix(b"Bearer ")
                .or_else(|| v.strip_prefix(b"bearer "))
        });
    let presented = header.or_else(|| query_key(query).0.map(str::as_bytes));
    server::authorize_presented(app, presented, GEMINI)
}

fn not_found(app: &App, what: String) -> crate::error::GatewayError {
    app.reject(GEMINI, 404, "unknown_route", what).into()
}

async fn generate(
    axum::extract::State(app): St,
    h: HeaderMap,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response> {
    call(app, h, &rest, query, body).await
}

async fn vertex(
    axum::extract::State(app): St,
    h: HeaderMap,
    Path((publisher, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response> {
    call(app, h, &format!("{publisher}/{rest}"), query, body).await
}

/// One `generateContent` / `streamGenerateContent` / `countTokens` call.
async fn call(
    app: Arc<App>,
    h: HeaderMap,
    rest: &str,
    query: Option<String>,
    body: Body,
) -> Result<Response> {
    let started = Instant::now();
    let caller = authorize(&app, &h, query.as_deref())?;
    let key = server::key_name(caller.as_deref()).to_owned();
    let Some((model, method)) = split_method(rest) else {
        let what = format!(
            "no Gemini method in {rest:?}: llmux serves {{model}}:generateContent, :streamGenerateContent and :countTokens"
        );
        return Err(not_found(&app, what));
    };
    let raw = server::read_body(&app, &h, body, GEMINI).await?;
    let Ok(Value::Object(mut req)) = serde_json::from_slice::<Value>(&raw) else {
        let message = "the request body must be a JSON object";
        return Err(app.reject(GEMINI, 400, "invalid_json", message).into());
    };
    if method == Method::CountTokens {
        return count_tokens(&app, caller.as_deref(), model, req);
    }
    let stream = method == Method::Stream;
    req.insert("model".into(), Value::from(model));
    req.insert("stream".into(), Value::Bool(stream));
    drop(raw);
    let bytes = serde_json::to_vec(&req).unwrap_or_default();
    drop(req);
    let sent = server::submit(&app, GEMINI, &h, &bytes, caller.as_deref(), &key).await?;
    // The body is not needed while the answer streams.
    drop(bytes);
    let (_, sse) = query_key(query.as_deref());
    if stream && !sse {
        return array_response(app, key, sent, started).await;
    }
    server::respond(app, GEMINI, key, sent, started).await
}

/// `countTokens`: `{"totalTokens": N}`, N estimated as llmux estimates
/// prompts (JSON bytes of `contents`, `systemInstruction` and `tools` / 4),
/// for a model the catalog knows. A `generateContentRequest` wrapper is
/// read too.
fn count_tokens(
    app: &App,
    caller: Option<&CallerKey>,
    model: &str,
    req: Map<String, Value>,
) -> Result<Response> {
    let slug = model.split(':').next().unwrap_or(model);
    if let Some(k) = caller.filter(|k| !k.policy.allows(slug)) {
        let message = format!("the key `{}` may not call the model `{slug}`", k.name);
        return Err(app
            .reject(GEMINI, 403, "model_not_allowed", message)
            .model(slug)
            .key(&k.name)
            .into());
    }
    if app.engine.catalog().model(slug).is_none() {
        let message = format!("unknown model `{slug}`");
        return Err(app
            .reject(GEMINI, 404, "unknown_model", message)
            .model(slug)
            .into());
    }
    let req = match req.get("generateContentRequest") {
        Some(Value::Object(inner)) => inner.clone(),
        _ => req,
    };
    let n = llmux::request::estimate_prompt_tokens(&req);
    let mut r = crate::error::json_response(200, json!({"totalTokens": n}).to_string());
    r.headers_mut()
        .insert("x-llmux-count", HeaderValue::from_static("estimate"));
    Ok(r)
}

/// `streamGenerateContent` without `alt=sse`: the chunks gathered into
/// one JSON array, as Google answers; an error before the first chunk is
/// an HTTP error, one after it closes the array with the error object.
async fn array_response(
    app: Arc<App>,
    key: String,
    sent: server::Submitted,
    started: Instant,
) -> Result<Response> {
    let server::Submitted {
        mut events,
        lease,
        span,
    } = sent;
    let ctx = server::Ctx {
        app,
        id: events.id(),
        proto: GEMINI,
        model: events.model().to_owned(),
        key,
        stream: true,
        started,
        lease: std::sync::Mutex::new(lease),
        span,
    };
    let mut chunks: Vec<String> = Vec::new();
    while let Some(ev) = events.recv().await {
        if ev.kind == EventKind::Chunk {
            chunks.push(ev.data);
            continue;
        }
        let Some(t) = server::read_terminal(&ctx, &ev) else {
            break;
        };
        let (status, outcome) = match t.kind {
            TerminalKind::Done => (200, "success".into()),
            TerminalKind::Error => (t.status.unwrap_or(502), t.outcome.clone()),
        };
        let error = t.error.map(|e| e.get());
        let message = error.and_then(crate::record::error_message);
        ctx.finish_with(status, &outcome, Some(&t.routing), message.as_deref());
        let Some(err) = error else {
            return Ok(crate::error::json_response(
                200,
                format!("[{}]", chunks.join(",\n")),
            ));
        };
        if chunks.is_empty() {
            return Ok(crate::error::json_response(status, err.to_owned()));
        }
        chunks.push(err.to_owned());
        return Ok(crate::error::json_response(
            200,
            format!("[{}]", chunks.join(",\n")),
        ));
    }
    ctx.finish_with(
        500,
        "internal_error",
        None,
        Some("the request ended without a result"),
    );
    Err(crate::error::GatewayError::NoResult {
        proto: GEMINI,
        status: 500,
        kind: "internal_error",
        message: "the request ended without a result",
    })
}

/// One model in Google's shape.
fn model_json(m: &server::ListedModel) -> Value {
    let input = m.endpoints.iter().filter_map(|e| e.context_length).max();
    json!({
        "name": format!("models/{}", m.slug),
        "baseModelId": m.slug,
        "version": "llmux",
        "displayName": m.slug,
        "description": format!("{} through llmux ({} endpoints)", m.slug, m.endpoints.len()),
        "inputTokenLimit": input.unwrap_or(0),
        "outputTokenLimit": 0,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

/// Every model in Google's list shape (`{"models": [...]}`).
pub fn models_json(app: &App, key: Option<&CallerKey>) -> Value {
    let models: Vec<Value> = server::endpoints_by_model(app, key)
        .iter()
        .map(model_json)
        .collect();
    json!({ "models": models })
}

async fn list(
    axum::extract::State(app): St,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let key = authorize(&app, &h, q.as_deref())?;
    Ok(crate::error::json_response(
        200,
        models_json(&app, key.as_deref()).to_string(),
    ))
}

async fn get_model(
    axum::extract::State(app): St,
    h: HeaderMap,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    if let Some(slug) = rest
        .strip_suffix("/endpoints")
        .filter(|s| s.matches('/').count() == 1)
    {
        return server::model_endpoints(app, h, slug.to_owned()).await;
    }
    let key = authorize(&app, &h, q.as_deref())?;
    let asked = rest.strip_prefix("models/").unwrap_or(&rest);
    let cat = app.engine.catalog();
    let slug = cat
        .model(asked)
        .map_or_else(|| asked.to_owned(), |i| cat.models[i].slug.clone());
    match server::endpoints_by_model(&app, key.as_deref())
        .iter()
        .find(|m| m.slug == slug)
    {
        Some(m) => Ok(crate::error::json_response(200, model_json(m).to_string())),
        None => {
            let message = format!("unknown model `{asked}`");
            Err(app
                .reject(GEMINI, 404, "unknown_model", message)
                .model(asked)
                .into())
        }
    }
}
