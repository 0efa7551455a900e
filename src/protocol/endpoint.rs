//! Each protocol's wire facts, asked by the catalog (URL paths, version
//! headers) and the upstream client (URL of one request, the key's header):
//! the values live in the protocol rooms.

use super::{anthropic, gemini, openai, responses, Protocol};

/// How a provider's key travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key as the value of this header.
    Header(&'static str),
}

impl Protocol {
    /// Every protocol, in the C ABI's order.
    pub const ALL: [Protocol; 4] = [
        Protocol::OpenAi,
        Protocol::Anthropic,
        Protocol::Responses,
        Protocol::Gemini,
    ];

    /// The path llmux appends to a provider's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Protocol::OpenAi => openai::PATH,
            Protocol::Anthropic => anthropic::PATH,
            Protocol::Responses => responses::PATH,
            Protocol::Gemini => gemini::PATH,
        }
    }

    /// The URL of one request when it is not the provider's URL (base URL
    /// and [`Protocol::path`]) itself: Gemini names the model and the
    /// method in the URL.
    pub fn request_url(self, url: &str, upstream_model: &str, stream: bool) -> Option<String> {
        match self {
            Protocol::Gemini => Some(gemini::request_url(
                url.trim_end_matches('/'),
                upstream_model,
                stream,
            )),
            _ => None,
        }
    }

    /// How the provider's key is sent.
    pub fn auth(self) -> Auth {
        match self {
            Protocol::OpenAi | Protocol::Responses => Auth::Bearer,
            Protocol::Anthropic => Auth::Header(anthropic::AUTH_HEADER),
            Protocol::Gemini => Auth::Header(gemini::AUTH_HEADER),
        }
    }

    /// The version header every request carries, with its default value
    /// (a provider's config may set another value).
    pub fn version_header(self) -> Option<(&'static str, &'static str)> {
        match self {
            Protocol::Anthropic => Some((anthropic::VERSION_HEADER, anthropic::DEFAULT_VERSION)),
            _ => None,
        }
    }

    /// The header that carries beta features, when the protocol has one.
    pub fn beta_header(self) -> Option<&'static str> {
        match self {
            Protocol::Anthropic => Some(anthropic::BETA_HEADER),
            _ => None,
        }
    }

    /// The protocol of a provider config's `protocol` name.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}
