//! TEMPORARY STUB: replaced by the Anthropic protocol module.
use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamStep, Usage};
use serde_json::{json, Value};
pub struct Passthrough;
impl Passthrough {
    pub fn new(_c: StreamContext) -> Self {
        Passthrough
    }
}
impl StreamAdapter for Passthrough {
    fn on_event(&mut self, _ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        Err(PayloadError::Malformed("stub".into()))
    }
    fn usage(&self) -> Option<Usage> {
        None
    }
}
pub fn check_response(_v: &Value) -> Result<Option<Usage>, PayloadError> {
    Err(PayloadError::Malformed("stub".into()))
}
pub fn error_body(_s: u16, kind: &str, message: &str) -> Value {
    json!({"type":"error","error":{"type":kind,"message":message}})
}
pub fn error_message(v: &Value) -> Option<String> {
    v.get("error")?.get("message")?.as_str().map(str::to_owned)
}
