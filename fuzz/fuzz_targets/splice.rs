//! The same-protocol splice (`protocol::splice`) on arbitrary bytes. The
//! first byte picks the options (stream, ask for usage, which model name);
//! the rest is the caller's body. Invariants: `read` accepts exactly the
//! bytes `serde_json` parses to an object; the splice of an accepted body
//! is valid JSON equal to the body's own parse with `model` replaced,
//! llmux's fields removed and, when asked, `stream` and
//! `stream_options.include_usage` set; `raw` and `tree` agree with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux::protocol::splice::{self, Body, OWN_FIELDS};
use serde_json::{Map, Value};

const MODELS: [&str; 4] = ["up/m", "", "q\"\\\u{1}\u{e9}", "m\u{2028}\u{1F600}"];

fuzz_target!(|data: &[u8]| {
    let Some((&opts, body)) = data.split_first() else {
        return;
    };
    let (stream, ask_usage) = (opts & 1 != 0, opts & 2 != 0);
    let model = MODELS[(opts >> 2) as usize % MODELS.len()];
    let parsed = serde_json::from_slice::<Value>(body);
    let text = match (splice::read(body), parsed) {
        (Ok((text, _)), Ok(Value::Object(_))) => text,
        (Err(_), Ok(Value::Object(_))) if std::str::from_utf8(body).is_err() => return,
        (Err(_), Err(_)) => return,
        (Err(_), Ok(v)) if !v.is_object() => return,
        (r, p) => panic!("read {:?} but serde_json {:?}", r.map(|x| x.0), p),
    };
    let Ok(Value::Object(mut want)) = serde_json::from_str::<Value>(text) else {
        unreachable!()
    };
    let b = Body::new(text);
    for (k, v) in &want {
        let raw = b.raw(k).expect("every top-level key has a raw value");
        assert_eq!(
            &serde_json::from_str::<Value>(raw).unwrap(),
            v,
            "raw({k:?})"
        );
    }
    for k in OWN_FIELDS {
        want.shift_remove(k);
    }
    assert_eq!(b.tree(), &want);
    expect_splice(&mut want, model, stream, ask_usage);
    let out = b.splice(model, stream, ask_usage);
    let got: Map<String, Value> = match serde_json::from_slice(&out) {
        Ok(m) => m,
        Err(e) => panic!(
            "splice made invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&out));
});

/// What the splice must produce, as a parsed map.
fn expect_splice(want: &mut Map<String, Value>, model: &str, stream: bool, ask_usage: bool) {
    want.insert("model".into(), model.into());
    if stream {
        want.insert("stream".into(), true.into());
    }
    if ask_usage {
        match want.get_mut("stream_options") {
            Some(Value::Object(o)) => {
                o.insert("include_usage".into(), true.into());
            }
            _ => {
                want.insert(
                    "stream_options".into(),
                    serde_json::json!({"include_usage": true}),
                );
            }
        }
    }
}
