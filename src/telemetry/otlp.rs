//! OTLP/HTTP protobuf encoding of spans: `ExportTraceServiceRequest` and
//! the messages under it, written by hand from the published definitions
//! (opentelemetry-proto `collector/trace/v1/trace_service.proto`,
//! `trace/v1/trace.proto`, `common/v1/common.proto`,
//! `resource/v1/resource.proto`; the field numbers below are theirs).
//! Only what llmux sends is encoded; nothing is decoded here (the tests
//! decode with the published definitions).

use super::{AttrValue, SpanData};

/// A protobuf writer: varints, tags, length-delimited fields.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn message(&mut self, field: u32, m: W) {
        self.bytes(field, &m.0);
    }
    fn uint(&mut self, field: u32, v: u64) {
        self.tag(field, 0);
        self.varint(v);
    }
    fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// `AnyValue`: string_value 1, bool_value 2, int_value 3, double_value 4,
/// array_value 5 (`ArrayValue.values` 1).
fn any_value(v: &AttrValue) -> W {
    let mut w = W::default();
    match v {
        AttrValue::Str(s) => w.string(1, s),
        AttrValue::Bool(b) => w.uint(2, u64::from(*b)),
        AttrValue::Int(i) => w.uint(3, *i as u64),
        AttrValue::F64(f) => w.fixed64(4, f.to_bits()),
        AttrValue::StrArray(a) => {
            let mut arr = W::default();
            for s in a {
                arr.message(1, any_value(&AttrValue::Str(s.clone())));
            }
            w.message(5, arr);
        }
    }
    w
}

/// `KeyValue`: key 1, value 2.
fn key_value(k: &str, v: &AttrValue) -> W {
    let mut w = W::default();
    w.string(1, k);
    w.message(2, any_value(v));
    w
}

/// `Span`: trace_id 1, span_id 2, parent_span_id 4, flags 16 (fixed32,
/// left out), name 5, kind 6, start 7 and end 8 (fixed64 unix ns),
/// attributes 9, status 15 (`Status`: message 2, code 3; 2 = error).
fn span(s: &SpanData) -> W {
    let mut w = W::default();
    w.bytes(1, &s.trace_id);
    w.bytes(2, &s.span_id);
    if let Some(p) = &s.parent {
        w.bytes(4, p);
    }
    w.string(5, &s.name);
    w.uint(6, s.kind as u64);
    w.fixed64(7, s.start_ns);
    w.fixed64(8, s.end_ns.max(s.start_ns));
    for (k, v) in &s.attributes {
        w.message(9, key_value(k, v));
    }
    let mut st = W::default();
    if let Some(msg) = &s.error {
        st.string(2, msg);
        st.uint(3, 2);
    } else {
        st.uint(3, 1);
    }
    w.message(15, st);
    w
}

/// `ExportTraceServiceRequest` (resource_spans 1) with one `ResourceSpans`
/// (resource 1 with attributes 1; scope_spans 2) holding one `ScopeSpans`
/// (scope 1: `InstrumentationScope` name 1, version 2; spans 2).
pub fn export_request(resource: &[(String, AttrValue)], spans: &[SpanData]) -> Vec<u8> {
    let mut res = W::default();
    for (k, v) in resource {
        res.message(1, key_value(k, v));
    }
    let mut scope = W::default();
    scope.string(1, "llmux");
    scope.string(2, env!("CARGO_PKG_VERSION"));
    let mut ss = W::default();
    ss.message(1, scope);
    for s in spans {
        ss.message(2, span(s));
    }
    let mut rs = W::default();
    rs.message(1, res);
    rs.message(2, ss);
    let mut req = W::default();
    req.message(1, rs);
    req.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_are_protobuf() {
        let mut w = W::default();
        w.varint(300);
        assert_eq!(w.0, [0xac, 0x02]);
        let mut w = W::default();
        w.string(5, "hi");
        assert_eq!(w.0, [0x2a, 2, b'h', b'i']);
        let mut w = W::default();
        w.uint(3, (-1i64) as u64);
        assert_eq!(w.0.len(), 11, "negative int64 takes ten varint bytes");
    }
}
