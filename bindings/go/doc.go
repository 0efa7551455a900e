// Package llmux is the Go binding of llmux, an embeddable multi-provider
// LLM router (a Rust library with a C ABI, linked through cgo).
//
// A Router holds the catalog of models and providers from a JSON config. It
// routes each request to a provider (by live latency, price, throughput or
// an explicit order), fails over before the first token, and reports where
// every request went:
//
//	r, err := llmux.New(configJSON)
//	if err != nil { ... }             // *llmux.Error naming the JSON path
//	defer r.Close()
//
//	resp, err := r.ChatCompletion(ctx, map[string]any{
//		"model":    "meta/llama-3.1-70b",
//		"messages": []map[string]string{{"role": "user", "content": "hi"}},
//	})
//	fmt.Println(resp.Text(), resp.Routing.Endpoint, resp.Routing.Attempts)
//
//	s, err := r.ChatCompletionStream(ctx, req)
//	for chunk, err := range s.Chunks() { ... }
//	fmt.Println(s.Routing())
//
// Requests take any JSON-marshalable value or raw JSON, in the OpenAI Chat
// Completions (ChatCompletion, ChatCompletionStream) or Anthropic Messages
// (Messages, MessagesStream) format. Cancelling the context cancels the
// request in llmux.
//
// Errors: *Error for result codes of the C API (compare with errors.Is and
// ErrUnknownModel, ErrInvalidConfig, ...), *APIError for requests that
// ended with an error event (HTTP status, error type, body, routing),
// ctx.Err() for cancelled contexts, ErrClosed after Router.Close.
//
// Inside, there is no background goroutine: a goroutine waiting for its
// request polls llmux itself when no other goroutine does, and hands the
// events of other requests to them by id; event data is copied into Go
// memory at once. No Go pointer is ever retained by C.
package llmux
