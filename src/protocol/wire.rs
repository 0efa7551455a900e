//! Shared pieces of the typed wire models: parsing a body with errors that
//! name the field, and the catch-all for tagged objects of unknown kinds.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{PayloadError, Usage};

pub(crate) fn bad(msg: impl Into<String>) -> PayloadError {
    PayloadError::Malformed(msg.into())
}

/// The refusal of a content block of `kind` at `path` that has no place
/// in `target` (a protocol name, maybe with where in it).
pub(crate) fn untranslatable(path: &str, kind: &str, target: &str) -> PayloadError {
    bad(format!(
        "`{path}`: block type `{kind}` cannot be translated to {target}"
    ))
}

/// `v` as a JSON object (`what` names it in the error).
pub(crate) fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PayloadError> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} is not a JSON object")))
}

/// `text` parsed as a JSON object (`what` names it in the error).
pub(crate) fn json_object(text: &str, what: &str) -> Result<Map<String, Value>, PayloadError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad(format!("{what} is not a JSON object"))),
        Err(e) => Err(bad(format!("{what} is not JSON: {e}"))),
    }
}

/// A usage object read by its protocol's names for the prompt count, the
/// completion count and the details object holding `cached_tokens`; a
/// missing or mistyped count is 0.
pub(crate) fn read_usage(v: &Value, [prompt, completion, details]: [&str; 3]) -> Option<Usage> {
    let u = v.as_object()?;
    let count = |n: Option<&Value>| n.and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: count(u.get(prompt)),
        completion_tokens: count(u.get(completion)),
        cached_tokens: count(u.get(details).and_then(|d| d.get("cached_tokens"))),
    })
}

/// Deserialises a typed body; an error names the field it is about
/// (`` `messages[0].role`: invalid type ... ``).
pub(crate) fn parse<'de, T: Deserialize<'de>>(
    body: &'de Map<String, Value>,
) -> Result<T, PayloadError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // An error inside a `TextOr` list names the item: join the paths.
        let (path, inner) = match inner.strip_prefix("at `").and_then(|r| r.split_once("`: ")) {
            Some((item, rest)) if item.starts_with('[') => {
                (format!("{path}{item}"), rest.to_owned())
            }
            _ => (path, inner),
        };
        if path == "." {
            bad(inner)
        } else {
            bad(format!("`{path}`: {inner}"))
        }
    })
}

/// A tagged object (`{"type": ...}`) of the kinds `T` knows.
pub(crate) trait Kinds {
    /// The `type` values `T` deserialises.
    const KINDS: &'static [&'static str];
}

/// A tagged object: one `T` knows, or the `type` of one it does not (kept
/// so a translator can drop or refuse it by name).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tagged<T> {
    Known(T),
    Unknown(String),
}

impl<'de, T: DeserializeOwned + Kinds> Deserialize<'de> for Tagged<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return Err(D::Error::custom("`type` is required and must be a string"));
        };
        if !T::KINDS.contains(&kind) {
            return Ok(Tagged::Unknown(kind.to_owned()));
        }
        serde_path_to_error::deserialize(&v)
            .map(Tagged::Known)
            .map_err(|e| {
                let path = e.path().to_string();
                let at = if path == "." {
                    String::new()
                } else {
                    format!(" at `{path}`")
                };
                D::Error::custom(format!("invalid `{kind}` block{at}: {}", e.into_inner()))
            })
    }
}

/// Content that is a plain string or a list of items (`T`, usually a
/// [`Tagged`] block). Hand-written rather than `untagged` so an error inside
/// an item keeps its message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TextOr<T> {
    Text(String),
    Items(Vec<T>),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(TextOr::Text(s)),
            v @ Value::Array(_) => serde_path_to_error::deserialize(v)
                .map(TextOr::Items)
                .map_err(|e| {
                    let path = e.path().to_string();
                    D::Error::custom(format!("at `{path}`: {}", e.into_inner()))
                }),
            _ => Err(D::Error::custom("must be a string or an array")),
        }
    }
}

impl<T: Serialize> Serialize for Tagged<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tagged::Known(t) => t.serialize(s),
            Tagged::Unknown(kind) => serde_json::json!({ "type": kind }).serialize(s),
        }
    }
}

impl<T: Serialize> Serialize for TextOr<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TextOr::Text(t) => t.serialize(s),
            TextOr::Items(items) => items.serialize(s),
        }
    }
}

/// `{path}.{key}`, or `key` at the top.
pub(crate) fn sub(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
