//! llmux: an embeddable multi-provider LLM router.
//!
//! A host hands llmux a catalog of models and providers (JSON) and submits
//! chat requests in the OpenAI Chat Completions or Anthropic Messages format.
//! llmux picks the endpoint per request (by first-token latency, price,
//! throughput or an explicit order), sends it over HTTP, fails over when an
//! endpoint misbehaves before the first token, and hands stream chunks and
//! exactly one terminal event per request back through [`Engine::poll`].
//!
//! [`Engine::stats`], [`Engine::plan`] and the terminal events are typed
//! ([`api`]); the C ABI hands out the same documents as JSON.
//!
//! The C ABI lives in [`ffi`]; `include/llmux.h` is generated from it.

pub mod api;
pub mod budget;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod events;
pub mod ffi;
pub mod health;
pub mod protocol;
pub mod request;
pub mod routing;
pub mod shared;
pub mod telemetry;
pub mod upstream;

pub use api::{
    Attempt, Circuit, DataPolicy, EndpointFacts, EndpointHealth, EndpointStats, FilteredEndpoint,
    ModelStats, Plan, PlanCandidate, PlanError, PlanFiltered, PlanModel, Price, RoutingRecord,
    SharedEndpointStats, SharedStats, SharedStatus, Stats, TerminalEvent, TerminalKind, TokenUsage,
};
pub use engine::{
    Engine, EngineError, Prepared, ReloadEndpoint, ReloadReport, RequestEvents, Serving,
    SubmitError, SubmitOptions,
};
pub use events::{ErrorKind, Event, EventKind};
pub use protocol::Protocol;
pub use request::RequestError;
