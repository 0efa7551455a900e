//! TEMPORARY STUB: replaced by the translation module.
use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamStep, Usage};
use serde_json::{Map, Value};
pub struct AnthropicToOpenAi;
impl AnthropicToOpenAi {
    pub fn new(_c: StreamContext) -> Self {
        AnthropicToOpenAi
    }
}
impl StreamAdapter for AnthropicToOpenAi {
    fn on_event(&mut self, _ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        Err(PayloadError::Malformed("stub".into()))
    }
    fn usage(&self) -> Option<Usage> {
        None
    }
}
pub struct OpenAiToAnthropic;
impl OpenAiToAnthropic {
    pub fn new(_c: StreamContext) -> Self {
        OpenAiToAnthropic
    }
}
impl StreamAdapter for OpenAiToAnthropic {
    fn on_event(&mut self, _ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        Err(PayloadError::Malformed("stub".into()))
    }
    fn usage(&self) -> Option<Usage> {
        None
    }
}
pub fn openai_request_to_anthropic(_b: &Map<String, Value>) -> Result<Value, PayloadError> {
    Err(PayloadError::Malformed("stub".into()))
}
pub fn anthropic_request_to_openai(_b: &Map<String, Value>) -> Result<Value, PayloadError> {
    Err(PayloadError::Malformed("stub".into()))
}
pub fn anthropic_response_to_openai(_v: &Value) -> Result<Value, PayloadError> {
    Err(PayloadError::Malformed("stub".into()))
}
pub fn openai_response_to_anthropic(_v: &Value) -> Result<Value, PayloadError> {
    Err(PayloadError::Malformed("stub".into()))
}
