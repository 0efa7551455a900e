//! Same-protocol pass-through without a JSON tree.
//!
//! A caller's body is read once by [`read`]: `serde_json` validates every
//! byte exactly as parsing it into a `Value` would (same errors, same
//! positions, same limits) while the few top-level fields routing needs are
//! captured typed and borrowed ([`Facts`]); nothing else is kept. A second,
//! cheap walk over the (now known valid) bytes records where each top-level
//! entry starts and ends ([`Body`]). When caller and endpoint speak the same
//! protocol, [`Body::splice`] writes the body upstream by copying those
//! byte ranges: `model` replaced, llmux's own fields (`provider`,
//! `models`) removed, and for streams `stream: true` and (OpenAI)
//! `stream_options.include_usage: true` set in place. Every other byte, the
//! caller's key order and whitespace included, goes through unchanged.
//! Translation to another protocol builds the tree on demand
//! ([`Body::tree`]), once per request.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

/// Top-level fields llmux reads for itself and never sends upstream.
pub const OWN_FIELDS: [&str; 2] = ["provider", "models"];

/// Fields whose JSON size makes the prompt-token estimate.
const PROMPT_FIELDS: [&str; 7] = [
    "messages",
    "system",
    "tools",
    "input",
    "instructions",
    "contents",
    "systemInstruction",
];

/// The kind of a JSON value, with the string or boolean it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape<'a> {
    Null,
    Bool(bool),
    Number,
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Shape<'_> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Shape::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Shape::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// The top-level fields routing reads, captured while validating (a key
/// given twice: the last one, as in a parsed map).
#[derive(Debug, Default)]
pub struct Facts<'a> {
    pub model: Option<Shape<'a>>,
    pub stream: Option<Shape<'a>>,
    pub messages: Option<Shape<'a>>,
    pub input: Option<Shape<'a>>,
    /// Gemini's turns.
    pub contents: Option<Shape<'a>>,
    pub user: Option<Shape<'a>>,
    /// `stream_options.include_usage`.
    pub include_usage: Option<Shape<'a>>,
    /// `metadata.user_id` (Anthropic).
    pub user_id: Option<Shape<'a>>,
    /// llmux's own fields, small objects read as values.
    pub provider: Option<Value>,
    pub models: Option<Value>,
    /// `max_tokens`, `max_completion_tokens`, `max_output_tokens`, when
    /// each is a non-negative integer (what a budget reservation reads).
    pub output_limits: [Option<u64>; 3],
    /// Gemini's `generationConfig.maxOutputTokens`, read the same way.
    pub gemini_output_limit: Option<u64>,
}

impl Facts<'_> {
    /// The body's output limit: the first of [`Facts::output_limits`] set.
    pub fn output_limit(&self) -> Option<u64> {
        self.output_limits.iter().find_map(|l| *l)
    }

    /// The output limit of a `protocol` body: Gemini's own field for a
    /// Gemini body (another's would bound nothing upstream), else
    /// [`Facts::output_limit`].
    pub fn output_limit_for(&self, protocol: super::Protocol) -> Option<u64> {
        match protocol {
            super::Protocol::Gemini => self.gemini_output_limit,
            _ => self.output_limit(),
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Not JSON: `serde_json`'s message, as parsing into a `Value` gives it.
    Json(String),
    /// JSON, but not an object.
    NotObject,
}

/// Validates `json` as a JSON object and captures its [`Facts`].
pub fn read(json: &[u8]) -> Result<(&str, Facts<'_>), ReadError> {
    let Ok(text) = std::str::from_utf8(json) else {
        return Err(slow_error(json));
    };
    if first_byte(text.as_bytes()) != Some(b'{') {
        return Err(slow_error(json));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let facts = de
        .deserialize_any(Top)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| ReadError::Json(e.to_string()))?;
    Ok((text, facts))
}

/// The error for a body the fast path does not take (not UTF-8, not an
/// object): whatever parsing it into a `Value` says.
fn slow_error(json: &[u8]) -> ReadError {
    match serde_json::from_slice::<Value>(json) {
        Err(e) => ReadError::Json(e.to_string()),
        Ok(Value::Object(_)) => ReadError::Json("the request is not valid UTF-8".into()),
        Ok(_) => ReadError::NotObject,
    }
}

fn first_byte(t: &[u8]) -> Option<u8> {
    t.iter().copied().find(|b| !is_ws(*b))
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The top-level object: validates every entry, keeps the facts.
struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Facts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Facts<'de>, A::Error> {
        let mut f = Facts::default();
        while let Some(k) = m.next_key_seed(Key)? {
            let shape = |m: &mut A| m.next_value_seed(ShapeOf).map(Some);
            match &*k {
                "model" => f.model = shape(&mut m)?,
                "stream" => f.stream = shape(&mut m)?,
                "messages" => f.messages = shape(&mut m)?,
                "input" => f.input = shape(&mut m)?,
                "contents" => f.contents = shape(&mut m)?,
                "user" => f.user = shape(&mut m)?,
                "stream_options" => {
                    f.include_usage = m.next_value_seed(Field("include_usage", ShapeOf))?
                }
                "metadata" => f.user_id = m.next_value_seed(Field("user_id", ShapeOf))?,
                "provider" => f.provider = Some(m.next_value()?),
                "models" => f.models = Some(m.next_value()?),
                "max_tokens" => f.output_limits[0] = m.next_value_seed(U64Of)?,
                "max_completion_tokens" => f.output_limits[1] = m.next_value_seed(U64Of)?,
                "max_output_tokens" => f.output_limits[2] = m.next_value_seed(U64Of)?,
                "generationConfig" => {
                    let limit = m.next_value_seed(Field("maxOutputTokens", U64Of))?;
                    f.gemini_output_limit = limit.flatten();
                }
                _ => m.next_value_seed(Validate)?,
            }
        }
        Ok(f)
    }
}

/// A key, borrowed when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

/// Any value, checked as a `Value` parse would check it, kept as nothing.
/// (`deserialize_any`, not `ignored_any`: strings have their escapes
/// decoded and numbers their range checked, as in a tree.)
struct Validate;

impl<'de> DeserializeSeed<'de> for Validate {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Validate {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element_seed(Validate)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while m.next_key_seed(Validate)?.is_some() {
            m.next_value_seed(Validate)?;
        }
        Ok(())
    }
}

/// Any value, validated, kept when it is an integer that fits a `u64`
/// (as `Value::as_u64` reads it).
#[derive(Clone, Copy)]
struct U64Of;

impl<'de> DeserializeSeed<'de> for U64Of {
    type Value = Option<u64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for U64Of {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Option<u64>, E> {
        Ok(Some(n))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Option<u64>, A::Error> {
        Validate.visit_seq(s).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Option<u64>, A::Error> {
        Validate.visit_map(m).map(|()| None)
    }
}

/// Any value, validated, reported as its [`Shape`].
#[derive(Clone, Copy)]
struct ShapeOf;

impl<'de> DeserializeSeed<'de> for ShapeOf {
    type Value = Shape<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape<'de>, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Shape<'de>, E> {
        Ok(Shape::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Shape<'de>, E> {
        Ok(Shape::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape<'de>, E> {
        Ok(Shape::Number)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape<'de>, E> {
        Ok(Shape::Number)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape<'de>, E> {
        Ok(Shape::Number)
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Shape<'de>, E> {
        Ok(Shape::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Shape<'de>, E> {
        Ok(Shape::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Shape<'de>, A::Error> {
        while s.next_element_seed(Validate)?.is_some() {}
        Ok(Shape::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Shape<'de>, A::Error> {
        while m.next_key_seed(Validate)?.is_some() {
            m.next_value_seed(Validate)?;
        }
        Ok(Shape::Object)
    }
}

/// Any value, validated; when it is an object, its field `.0` (the last
/// one if repeated) as the seed `.1` reads it.
struct Field<S>(&'static str, S);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for Field<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for Field<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element_seed(Validate)?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = m.next_key_seed(Key)? {
            if k == self.0 {
                found = Some(m.next_value_seed(self.1)?);
            } else {
                m.next_value_seed(Validate)?;
            }
        }
        Ok(found)
    }
}

// ---- The byte layout of a validated object ----

/// One `"key": value` of an object, by byte offsets into its text.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Where the separator before the key starts (just after the previous
    /// value, or after `{`).
    gap: usize,
    key: usize,
    key_end: usize,
    value: usize,
    value_end: usize,
}

/// Where an object's entries lie. `text` must be valid JSON (validated by
/// [`read`]) with the object's `{` at `open`.
fn entries(t: &[u8], open: usize) -> (Vec<Entry>, usize) {
    let mut out = Vec::with_capacity(16);
    let mut i = open + 1;
    loop {
        let gap = i;
        i = skip_ws(t, i);
        match t.get(i) {
            Some(b',') => i = skip_ws(t, i + 1),
            Some(b'"') => {}
            _ => return (out, gap),
        }
        let key = i;
        let key_end = skip_string(t, key);
        // `"key"`, blanks, `:`, blanks.
        let value = skip_ws(t, skip_ws(t, key_end) + 1);
        let value_end = skip_value(t, value);
        out.push(Entry {
            gap,
            key,
            key_end,
            value,
            value_end,
        });
        i = value_end;
    }
}

fn skip_ws(t: &[u8], mut i: usize) -> usize {
    while t.get(i).is_some_and(|b| is_ws(*b)) {
        i += 1;
    }
    i
}

/// From an opening quote to just past the closing one.
fn skip_string(t: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    loop {
        let next = t.get(j..).and_then(|r| memchr::memchr2(b'"', b'\\', r));
        match next {
            Some(k) if t[j + k] == b'"' => return j + k + 1,
            Some(k) => j += k + 2,
            None => return t.len(),
        }
    }
}

fn skip_value(t: &[u8], i: usize) -> usize {
    match t.get(i) {
        Some(b'"') => skip_string(t, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(&b) = t.get(j) {
                match b {
                    b'"' => {
                        j = skip_string(t, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            t.len()
        }
        _ => {
            let mut j = i;
            while t
                .get(j)
                .is_some_and(|b| !is_ws(*b) && !matches!(b, b',' | b'}' | b']'))
            {
                j += 1;
            }
            j
        }
    }
}

/// An entry's key, unescaped.
fn key_of<'t>(text: &'t str, e: &Entry) -> Cow<'t, str> {
    let raw = &text[e.key..e.key_end];
    let inner = &raw[1..raw.len() - 1];
    if inner.contains('\\') {
        Cow::Owned(serde_json::from_str(raw).unwrap_or_default())
    } else {
        Cow::Borrowed(inner)
    }
}

/// What an entry is to the splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Own,
    Model,
    Stream,
    StreamOptions,
    /// Counted in the prompt estimate (index into [`PROMPT_FIELDS`]).
    Prompt(u8),
    Other,
}

fn role_of(key: &str) -> Role {
    match key {
        "model" => Role::Model,
        "stream" => Role::Stream,
        "stream_options" => Role::StreamOptions,
        k if OWN_FIELDS.contains(&k) => Role::Own,
        k => PROMPT_FIELDS
            .iter()
            .position(|p| *p == k)
            .map_or(Role::Other, |i| Role::Prompt(i as u8)),
    }
}

/// A caller's request body, validated: its bytes and, each worked out on
/// first use, where its top-level entries lie (for the splice) and its
/// tree without llmux's own fields (for translation). A request only ever
/// served by the other protocol never lays its bytes out; one only served
/// by its own never builds the tree.
#[derive(Debug, Default)]
pub struct Body {
    text: String,
    layout: OnceLock<Layout>,
    tree: OnceLock<Map<String, Value>>,
}

/// Where a body's top-level entries lie.
#[derive(Debug)]
struct Layout {
    open: usize,
    /// The end of the last entry's value (after `{` when there is none).
    last_end: usize,
    entries: Vec<(Entry, Role)>,
}

impl Layout {
    fn of(text: &str) -> Layout {
        let t = text.as_bytes();
        let open = skip_ws(t, 0);
        let (found, last_end) = entries(t, open);
        let entries = found
            .into_iter()
            .map(|e| (e, role_of(&key_of(text, &e))))
            .collect();
        Layout {
            open,
            last_end,
            entries,
        }
    }
}

impl Body {
    /// A body [`read`] validated.
    pub fn new(text: &str) -> Body {
        Body {
            text: text.to_owned(),
            layout: OnceLock::new(),
            tree: OnceLock::new(),
        }
    }

    fn layout(&self) -> &Layout {
        self.layout.get_or_init(|| Layout::of(&self.text))
    }

    /// A body from a parsed map (tests, tools): its serialisation.
    pub fn from_map(map: &Map<String, Value>) -> Body {
        Body::new(&serde_json::to_string(map).unwrap_or_else(|_| "{}".into()))
    }

    /// The caller's bytes, llmux's fields included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The body as a map without llmux's own fields, parsed on first use.
    pub fn tree(&self) -> &Map<String, Value> {
        self.tree.get_or_init(|| {
            let mut m: Map<String, Value> = serde_json::from_str(&self.text).unwrap_or_default();
            for k in OWN_FIELDS {
                m.shift_remove(k);
            }
            m
        })
    }

    /// The raw JSON of top-level field `key` (the last one if repeated).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.layout()
            .entries
            .iter()
            .rev()
            .find(|(e, _)| key_of(&self.text, e) == key)
            .map(|(e, _)| &self.text[e.value..e.value_end])
    }

    /// Estimated prompt tokens: the compact JSON size of `messages`,
    /// `system`, `tools`, `input` and `instructions`, in bytes, / 4,
    /// rounded up. The size is that of the values written without
    /// blanks between tokens and with `serde_json`'s string escapes, so it
    /// matches the size of the re-serialised tree (numbers aside, which
    /// count as the caller wrote them).
    pub fn prompt_tokens_estimate(&self) -> u64 {
        let mut seen = 0u8;
        let mut bytes = 0usize;
        for (e, role) in self.layout().entries.iter().rev() {
            if let Role::Prompt(i) = role {
                if seen & (1 << i) == 0 {
                    seen |= 1 << i;
                    bytes += compact_len(&self.text.as_bytes()[e.value..e.value_end]);
                }
            }
        }
        (bytes as u64).div_ceil(4)
    }

    /// The body to send to an endpoint of the caller's own protocol:
    /// `model` replaced, llmux's own fields removed, and for a stream
    /// `stream: true` and (with `ask_usage`) `stream_options.include_usage:
    /// true`; every other byte as the caller sent it.
    pub fn splice(&self, model: &str, stream: bool, ask_usage: bool) -> Vec<u8> {
        let t = self.text.as_bytes();
        let layout = self.layout();
        let mut out = Vec::with_capacity(t.len() + model.len() + 64);
        out.extend_from_slice(&t[..=layout.open]);
        let (mut any, mut has) = (false, [false; 3]);
        for (e, role) in &layout.entries {
            if *role == Role::Own {
                continue;
            }
            let gap = &t[e.gap..e.key];
            if any {
                out.extend_from_slice(gap);
            } else {
                out.extend(gap.iter().filter(|b| **b != b','));
            }
            out.extend_from_slice(&t[e.key..e.value]);
            let value = &t[e.value..e.value_end];
            match role {
                Role::Model => {
                    has[0] = true;
                    write_str(&mut out, model);
                }
                Role::Stream if stream => {
                    has[1] = true;
                    out.extend_from_slice(b"true");
                }
                Role::StreamOptions if ask_usage => {
                    has[2] = true;
                    ask_for_usage(&mut out, value);
                }
                _ => out.extend_from_slice(value),
            }
            any = true;
        }
        let mut add = |out: &mut Vec<u8>, key: &str, value: &str| {
            if any {
                out.push(b',');
            }
            any = true;
            write_str(out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        if !has[0] {
            add(&mut out, "model", &Value::from(model).to_string());
        }
        if stream && !has[1] {
            add(&mut out, "stream", "true");
        }
        if ask_usage && !has[2] {
            add(&mut out, "stream_options", r#"{"include_usage":true}"#);
        }
        out.extend_from_slice(&t[layout.last_end..]);
        out
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a `&str` to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `stream_options` with `include_usage: true`: set in place when the
/// caller gave it, else added last; a non-object becomes
/// `{"include_usage":true}`.
fn ask_for_usage(out: &mut Vec<u8>, value: &[u8]) {
    if value.first() != Some(&b'{') {
        out.extend_from_slice(br#"{"include_usage":true}"#);
        return;
    }
    // `value` is a slice of validated UTF-8 ending at a `}`.
    let text = std::str::from_utf8(value).unwrap_or("{}");
    let (found, last_end) = entries(value, 0);
    let mut copied = 0;
    let mut set = false;
    for e in &found {
        if key_of(text, e) == "include_usage" {
            out.extend_from_slice(&value[copied..e.value]);
            out.extend_from_slice(b"true");
            copied = e.value_end;
            set = true;
        }
    }
    out.extend_from_slice(&value[copied..last_end.max(copied)]);
    if !set {
        if !found.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(br#""include_usage":true"#);
    }
    out.extend_from_slice(&value[last_end.max(copied)..]);
}

/// The length of valid JSON `v` written compactly by `serde_json`: no
/// blanks between tokens, strings with `serde_json`'s escapes (`"`, `\`
/// and control characters escaped, everything else as UTF-8).
fn compact_len(v: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if is_ws(b) {
            i += 1;
        } else if b == b'"' {
            let (len, end) = string_len(v, i);
            n += len;
            i = end;
        } else {
            n += 1;
            i += 1;
        }
    }
    n
}

/// A string token from its opening quote: its compact length (quotes
/// included) and where it ends.
fn string_len(v: &[u8], start: usize) -> (usize, usize) {
    let mut n = 2;
    let mut i = start + 1;
    while let Some(&b) = v.get(i) {
        match b {
            b'"' => return (n, i + 1),
            b'\\' => {
                let (len, used) = escape_len(v, i);
                n += len;
                i += used;
            }
            _ => {
                n += 1;
                i += 1;
            }
        }
    }
    (n, i)
}

/// An escape at `v[i]` (a backslash): its length once re-escaped, and
/// how many input bytes it took.
fn escape_len(v: &[u8], i: usize) -> (usize, usize) {
    match v.get(i + 1) {
        Some(b'/') => (1, 2),
        Some(b'u') => {
            let code = hex4(v, i + 2);
            let low = (v.get(i + 6) == Some(&b'\\') && v.get(i + 7) == Some(&b'u'))
                .then(|| hex4(v, i + 8));
            match (code, low) {
                (0xD800..=0xDBFF, Some(0xDC00..=0xDFFF)) => (4, 12),
                (0x08 | 0x09 | 0x0A | 0x0C | 0x0D | 0x22 | 0x5C, _) => (2, 6),
                (0..=0x1F, _) => (6, 6),
                (0..=0x7F, _) => (1, 6),
                (0..=0x7FF, _) => (2, 6),
                _ => (3, 6),
            }
        }
        _ => (2, 2),
    }
}

fn hex4(v: &[u8], i: usize) -> u32 {
    v.get(i..i + 4)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
