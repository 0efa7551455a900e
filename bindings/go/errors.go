package llmux

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ResultCode is an llmux_result value returned by a C function.
type ResultCode uint32

// Result codes (llmux.h, enum llmux_result).
const (
	ResultOK              ResultCode = 0
	ResultNullArgument    ResultCode = 7001
	ResultInvalidUTF8     ResultCode = 7002
	ResultInvalidJSON     ResultCode = 7003
	ResultInvalidConfig   ResultCode = 7004
	ResultInvalidRequest  ResultCode = 7005
	ResultUnknownModel    ResultCode = 7006
	ResultUnknownProvider ResultCode = 7007
	ResultUnknownEndpoint ResultCode = 7008
	ResultUnknownRequest  ResultCode = 7009
	ResultInvalidArgument ResultCode = 7010
	ResultShuttingDown    ResultCode = 7011
	ResultRuntime         ResultCode = 7012
	ResultPanic           ResultCode = 7013
	ResultRequestTooLarge ResultCode = 7014
)

// String is llmux's own description of the code (llmux_result_text).
func (c ResultCode) String() string { return cResultText(c) }

// Error is a failure reported by an llmux C function as a result code:
// a config that does not load, a request that cannot be submitted. Message
// is llmux's text (it names the JSON path of config problems and lists what
// exists for unknown models, providers and endpoints).
//
// Compare with the sentinels using errors.Is: errors.Is(err, ErrUnknownModel).
type Error struct {
	Code    ResultCode
	Message string
}

func newError(code ResultCode, msg string) *Error {
	return &Error{Code: code, Message: msg}
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "llmux: " + e.Code.String()
	}
	return "llmux: " + e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrInvalidConfig) works whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is, one per result code.
var (
	ErrNullArgument    = &Error{Code: ResultNullArgument}
	ErrInvalidUTF8     = &Error{Code: ResultInvalidUTF8}
	ErrInvalidJSON     = &Error{Code: ResultInvalidJSON}
	ErrInvalidConfig   = &Error{Code: ResultInvalidConfig}
	ErrInvalidRequest  = &Error{Code: ResultInvalidRequest}
	ErrUnknownModel    = &Error{Code: ResultUnknownModel}
	ErrUnknownProvider = &Error{Code: ResultUnknownProvider}
	ErrUnknownEndpoint = &Error{Code: ResultUnknownEndpoint}
	ErrUnknownRequest  = &Error{Code: ResultUnknownRequest}
	ErrInvalidArgument = &Error{Code: ResultInvalidArgument}
	ErrShuttingDown    = &Error{Code: ResultShuttingDown}
	ErrRuntime         = &Error{Code: ResultRuntime}
	ErrPanic           = &Error{Code: ResultPanic}
	ErrRequestTooLarge = &Error{Code: ResultRequestTooLarge}
)

// ErrClosed is returned by calls on a closed Router, and is wrapped by the
// error of every request that Close ended.
var ErrClosed = errors.New("llmux: router closed")

// ErrStreamClosed is the error of a Stream that Close ended before it finished.
var ErrStreamClosed = errors.New("llmux: stream closed")

// APIError is a request that ended with an ERROR event: the upstream (or
// llmux on its behalf) refused or failed it. Status is the HTTP status
// llmux reports (499 for a cancelled request, 504 for timeouts); Kind the
// protocol-neutral error kind the predicates below read (invalid_request,
// authentication, permission, not_found, rate_limit, timeout, upstream,
// overloaded, cancelled, internal, no_endpoint_matches); Type the error type of the body, which
// differs by protocol (OpenAI "timeout", Anthropic "timeout_error"); Body
// the error body in the caller's protocol; Routing every attempt made.
type APIError struct {
	Status  int
	Kind    string
	Type    string
	Message string
	Body    json.RawMessage
	Routing *Routing

	cause error // ErrClosed when the Router's Close ended the request
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("llmux: %d %s: %s", e.Status, e.Type, e.Message)
	if e.cause != nil {
		s = e.cause.Error() + ": " + s[len("llmux: "):]
	}
	return s
}

// Unwrap returns ErrClosed for a request ended by Router.Close, else nil.
func (e *APIError) Unwrap() error { return e.cause }

// IsRateLimit reports a 429 / rate limit (after failover ran out).
func (e *APIError) IsRateLimit() bool { return e.Kind == "rate_limit" }

// IsTimeout reports a connect, first-token, idle or total timeout.
func (e *APIError) IsTimeout() bool { return e.Kind == "timeout" }

// IsCancelled reports a request that was cancelled.
func (e *APIError) IsCancelled() bool { return e.Kind == "cancelled" }

// IsNoEndpointMatches reports a request whose provider preferences left no
// endpoint (nothing was sent upstream; the message names what removed each).
func (e *APIError) IsNoEndpointMatches() bool { return e.Kind == "no_endpoint_matches" }

// IsInvalidRequest reports a request the upstream refused as malformed
// (400, 413, 422): retrying it unchanged will not help.
func (e *APIError) IsInvalidRequest() bool { return e.Kind == "invalid_request" }

// IsAuth reports an authentication or permission failure (401, 403).
func (e *APIError) IsAuth() bool {
	return e.Kind == "authentication" || e.Kind == "permission"
}

// IsUpstream reports an upstream failure (5xx, broken connection,
// malformed or truncated response) or every endpoint being at its
// concurrency limit.
func (e *APIError) IsUpstream() bool { return e.Kind == "upstream" || e.Kind == "overloaded" }

// errorEvent is the JSON of an ERROR event.
type errorEvent struct {
	Status  int             `json:"status"`
	Kind    string          `json:"error_kind"`
	Error   json.RawMessage `json:"error"`
	Routing json.RawMessage `json:"routing"`
}

// parseAPIError builds an APIError from an ERROR event's JSON.
func parseAPIError(data []byte) *APIError {
	var ev errorEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return &APIError{Status: 500, Kind: "internal", Type: "internal_error",
			Message: "unreadable error event: " + err.Error(), Body: data}
	}
	e := &APIError{Status: ev.Status, Kind: ev.Kind, Body: ev.Error}
	// Both protocols put the details under "error": OpenAI
	// {"error":{"message","type"}}, Anthropic {"type":"error","error":{"type","message"}}.
	var body struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(ev.Error, &body) == nil {
		e.Type, e.Message = body.Error.Type, body.Error.Message
	}
	if r, err := parseRouting(ev.Routing); err == nil {
		e.Routing = r
	}
	return e
}
