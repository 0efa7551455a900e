package llmux

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"time"
)

// cancelGrace bounds how long a cancelled Stream waits for its terminal
// event (to report its routing record); llmux normally sends it at once.
const cancelGrace = 2 * time.Second

// ChatCompletion sends an OpenAI Chat Completions request and waits for the
// whole response. req is any value that marshals to the request JSON (a
// struct, a map), or raw JSON as json.RawMessage, []byte or string. The
// binding sets "stream": false. See Router.ChatCompletionStream for errors.
func (r *Router) ChatCompletion(ctx context.Context, req any) (*Response, error) {
	return r.complete(ctx, protoOpenAI, req)
}

// Messages sends an Anthropic Messages request (protocol 1) and waits for
// the whole response; Response.Body is an Anthropic message.
func (r *Router) Messages(ctx context.Context, req any) (*Response, error) {
	return r.complete(ctx, protoAnthropic, req)
}

// ChatCompletionStream starts a streaming OpenAI Chat Completions request
// (the binding sets "stream": true) and returns at once; read the chunks
// from the Stream. Each chunk is an OpenAI chat.completion.chunk, byte for
// byte as the upstream sent it.
//
// Errors: a request llmux refuses (unknown model, malformed JSON) returns
// an *Error at once; a request that fails later ends the stream with an
// *APIError; ctx being cancelled or reaching its deadline cancels the
// request in llmux and ends the stream with ctx.Err(); Router.Close ends it
// with an error wrapping ErrClosed.
func (r *Router) ChatCompletionStream(ctx context.Context, req any) (*Stream, error) {
	return r.stream(ctx, protoOpenAI, req)
}

// MessagesStream starts a streaming Anthropic Messages request (protocol
// 1); each chunk is an Anthropic stream event (its "type" names it).
func (r *Router) MessagesStream(ctx context.Context, req any) (*Stream, error) {
	return r.stream(ctx, protoAnthropic, req)
}

// Responses sends an OpenAI Responses request (protocol 2) and waits for
// the whole response; Response.Body is a Responses "response" object.
func (r *Router) Responses(ctx context.Context, req any) (*Response, error) {
	return r.complete(ctx, protoResponses, req)
}

// ResponsesStream starts a streaming OpenAI Responses request (protocol
// 2); each chunk is a Responses stream event ("type" names it,
// "sequence_number" orders it), from response.created to
// response.completed (response.incomplete, or response.failed before an
// error).
func (r *Router) ResponsesStream(ctx context.Context, req any) (*Stream, error) {
	return r.stream(ctx, protoResponses, req)
}

func (r *Router) complete(ctx context.Context, protocol uint32, req any) (*Response, error) {
	defer runtime.KeepAlive(r) // the Router must outlive the wait, not just the submit
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	body, err := encodeRequest(req, false)
	if err != nil {
		return nil, err
	}
	c := r.core
	cl, err := c.submit(ctx, protocol, body)
	if err != nil {
		return nil, err
	}
	for {
		ev, failure, ok := cl.take()
		if ok {
			if failure != nil {
				return nil, failure
			}
			switch ev.kind {
			case kindDone:
				return parseDone(cl.id, ev.data)
			case kindError:
				e := cl.apiError(ev.data)
				if ctxErr := ctx.Err(); ctxErr != nil && e.IsCancelled() {
					return nil, ctxErr
				}
				return nil, e
			}
			continue // a chunk: not expected without "stream"; ignore it
		}
		if !c.await(cl, ctx.Done(), nil) {
			c.cancel(cl.id)
			cl.abandon()
			return nil, ctx.Err()
		}
	}
}

func (r *Router) stream(ctx context.Context, protocol uint32, req any) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	body, err := encodeRequest(req, true)
	if err != nil {
		return nil, err
	}
	cl, err := r.core.submit(ctx, protocol, body)
	runtime.KeepAlive(r)
	if err != nil {
		return nil, err
	}
	return &Stream{r: r, cl: cl, ctx: ctx, closeCh: make(chan struct{})}, nil
}

// encodeRequest turns req into request JSON with "stream" set as asked.
// Input that is not a JSON object goes to llmux unchanged, which reports
// what is wrong with it.
func encodeRequest(req any, stream bool) ([]byte, error) {
	var body []byte
	switch v := req.(type) {
	case nil:
		return nil, nil // llmux: NULL argument
	case json.RawMessage:
		body = v
	case []byte:
		body = v
	case string:
		body = []byte(v)
	case map[string]any:
		if v == nil {
			return []byte("null"), nil
		}
		// The common case: set "stream" on a shallow copy, encode once.
		m := maps.Clone(v)
		m["stream"] = stream
		b, err := marshal(m)
		if err != nil {
			return nil, fmt.Errorf("llmux: cannot encode request: %w", err)
		}
		return b, nil
	default:
		b, err := marshal(req)
		if err != nil {
			return nil, fmt.Errorf("llmux: cannot encode request: %w", err)
		}
		body = b
	}
	return setStream(body, stream)
}

// setStream sets "stream" in the JSON object body. An object without the
// key (in any letter case) gets it appended, its bytes otherwise kept;
// one that has it is decoded and re-encoded only when the value differs.
func setStream(body []byte, stream bool) ([]byte, error) {
	want := []byte("false")
	if stream {
		want = []byte("true")
	}
	obj := bytes.TrimSpace(body)
	var probe struct {
		Stream json.RawMessage `json:"stream"` // matches any letter case
	}
	if len(obj) == 0 || obj[0] != '{' || json.Unmarshal(obj, &probe) != nil {
		return body, nil
	}
	if probe.Stream == nil {
		inner := bytes.TrimSpace(obj[1 : len(obj)-1])
		out := make([]byte, 0, len(inner)+16)
		out = append(out, '{')
		out = append(out, inner...)
		if len(inner) > 0 {
			out = append(out, ',')
		}
		out = append(out, `"stream":`...)
		out = append(out, want...)
		return append(out, '}'), nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(obj, &fields) != nil {
		return body, nil
	}
	if bytes.Equal(bytes.TrimSpace(fields["stream"]), want) {
		return body, nil
	}
	fields["stream"] = want
	return marshal(fields)
}

// marshal is json.Marshal without HTML escaping: prompts keep their <, >
// and & as written.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func parseDone(id uint64, data []byte) (*Response, error) {
	ev, err := decodeDone(data)
	if err != nil {
		return nil, err
	}
	resp := &Response{ID: id, Body: ev.Response}
	rt, err := parseRouting(ev.Routing)
	if err != nil {
		return nil, fmt.Errorf("llmux: unreadable routing record: %w", err)
	}
	if rt != nil {
		resp.Routing = *rt
	}
	return resp, nil
}

func (cl *call) apiError(data []byte) *APIError {
	e := parseAPIError(data)
	if cl.byClose.Load() {
		e.cause = ErrClosed
	}
	return e
}
