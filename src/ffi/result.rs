//! Result codes. Values are stable: a retired code is never reused.

/// What an llmux function returned. `LLMUX_OK` is 0; errors start at 7001.
/// `llmux_result_text` renders any code as text.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum llmux_result {
    Ok = 0,
    /// A required pointer argument was NULL.
    ErrNullArgument = 7001,
    /// A string argument was not valid UTF-8.
    ErrInvalidUtf8 = 7002,
    /// The request was not valid JSON.
    ErrInvalidJson = 7003,
    /// The config is invalid (the message names each JSON path).
    ErrInvalidConfig = 7004,
    /// The request is JSON but not a valid request.
    ErrInvalidRequest = 7005,
    /// The request names a model the catalog does not have.
    ErrUnknownModel = 7006,
    /// A `:provider` pin names a provider that does not serve the model.
    ErrUnknownProvider = 7007,
    /// An order list names an endpoint the model does not have.
    ErrUnknownEndpoint = 7008,
    /// No in-flight request has that id.
    ErrUnknownRequest = 7009,
    /// An argument is out of range (e.g. an unknown protocol value).
    ErrInvalidArgument = 7010,
    /// The engine is being freed.
    ErrShuttingDown = 7011,
    /// The engine's runtime or HTTP client could not be set up.
    ErrRuntime = 7012,
    /// A bug in llmux: a panic was caught at the boundary.
    ErrPanic = 7013,
    /// The request body is larger than the config's `max_request_bytes`.
    ErrRequestTooLarge = 7014,
}

pub(crate) fn text(code: u32) -> &'static str {
    match code {
        0 => "ok\0",
        7001 => "a required pointer argument was NULL\0",
        7002 => "a string argument is not valid UTF-8\0",
        7003 => "the request is not valid JSON\0",
        7004 => "the config is invalid\0",
        7005 => "the request is not a valid request\0",
        7006 => "unknown model\0",
        7007 => "the pinned provider does not serve this model\0",
        7008 => "the order list names an unknown endpoint\0",
        7009 => "unknown or finished request id\0",
        7010 => "an argument is out of range\0",
        7011 => "the engine is shutting down\0",
        7012 => "the engine could not start its runtime or HTTP client\0",
        7013 => "internal error (a panic was caught)\0",
        7014 => "the request is larger than max_request_bytes\0",
        _ => "unknown result code\0",
    }
}
