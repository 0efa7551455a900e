package llmux

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	if v := Version(); v != "0.1.0" && !strings.Contains(v, ".") {
		t.Fatalf("Version() = %q", v)
	}
	if s := ResultUnknownModel.String(); s == "" {
		t.Fatal("empty result text")
	}
}

func TestChatCompletion(t *testing.T) {
	r := newTestRouter(t)
	resp, err := r.ChatCompletion(context.Background(), chat("test/model", "provider", order("a")))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Text(); got != "Hello from a." {
		t.Errorf("Text() = %q, body %s", got, resp.Body)
	}
	var body struct {
		Object string `json:"object"`
		Model  string `json:"model"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil || body.Object != "chat.completion" {
		t.Errorf("body %s: %v", resp.Body, err)
	}
	rt := resp.Routing
	if rt.Model != "test/model" || rt.Endpoint != "a/default" || rt.Provider != "a" || rt.UpstreamModel != "up-a" {
		t.Errorf("routing %+v", rt)
	}
	if len(rt.Attempts) != 1 {
		t.Fatalf("attempts %+v", rt.Attempts)
	}
	at := rt.Attempts[0]
	if at.Endpoint != "a/default" || at.Provider != "a" || at.Outcome != "success" ||
		at.Status == nil || *at.Status != 200 || at.Error != nil || at.ElapsedMs <= 0 {
		t.Errorf("attempt %+v", at)
	}
	if rt.Usage == nil || rt.Usage.PromptTokens != 10 || rt.Usage.CompletionTokens == 0 ||
		rt.Usage.TotalTokens != rt.Usage.PromptTokens+rt.Usage.CompletionTokens {
		t.Errorf("usage %+v", rt.Usage)
	}
	// price a: 1 USD per million prompt tokens, 2 per million completion tokens.
	if rt.CostUSD == nil || rt.Usage == nil {
		t.Fatalf("cost %v", rt.CostUSD)
	}
	want := (float64(rt.Usage.PromptTokens)*1 + float64(rt.Usage.CompletionTokens)*2) / 1e6
	if d := *rt.CostUSD - want; d > 1e-12 || d < -1e-12 {
		t.Errorf("cost %v, want %v", *rt.CostUSD, want)
	}
	if rt.LatencyMs <= 0 || len(rt.Raw) == 0 {
		t.Errorf("latency %v raw %s", rt.LatencyMs, rt.Raw)
	}
	if resp.ID == 0 {
		t.Error("request id 0")
	}
}

func TestRawJSONRequests(t *testing.T) {
	r := newTestRouter(t)
	ctx := context.Background()
	raw := `{"model":"test/model:b","messages":[{"role":"user","content":"hi"}],"stream":true}`
	for _, req := range []any{json.RawMessage(raw), []byte(raw), raw} {
		// "stream": true is overridden for the non-streaming call.
		resp, err := r.ChatCompletion(ctx, req)
		if err != nil {
			t.Fatalf("%T: %v", req, err)
		}
		if resp.Routing.Endpoint != "b/default" || resp.Text() != "Hello from b." {
			t.Errorf("%T: %s %+v", req, resp.Body, resp.Routing)
		}
	}
}

func TestEncodeRequest(t *testing.T) {
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type req struct {
		Model    string `json:"model"`
		Messages []msg  `json:"messages"`
		Stream   bool   `json:"stream,omitempty"`
	}
	for _, stream := range []bool{false, true} {
		b, err := encodeRequest(req{Model: "m", Messages: []msg{{"user", "x"}}}, stream)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil || v["stream"] != stream || v["model"] != "m" {
			t.Errorf("stream=%v: %s", stream, b)
		}
	}
	// Already right: passed through byte for byte.
	in := `{"stream": true, "model":"m"}`
	if b, _ := encodeRequest(in, true); string(b) != in {
		t.Errorf("rewrote %s", b)
	}
	// No "stream": appended, the rest kept byte for byte.
	for in, want := range map[string]string{
		` {"model": "m", "n": [1, 2]} `: `{"model": "m", "n": [1, 2],"stream":true}`,
		"{ }":                           `{"stream":true}`,
		`{"model":"m","stream":false}`:  `{"model":"m","stream":true}`,
		`{"Stream":false,"model":"m"}`:  `{"Stream":false,"model":"m","stream":true}`,
	} {
		if b, _ := encodeRequest(in, true); string(b) != want {
			t.Errorf("%s: got %s, want %s", in, b, want)
		}
	}
	// A map: the caller's map is left alone.
	m := map[string]any{"model": "m", "stream": true}
	if b, _ := encodeRequest(m, false); string(b) != `{"model":"m","stream":false}` || m["stream"] != true {
		t.Errorf("map: %s, caller's map %v", b, m)
	}
	if b, _ := encodeRequest(map[string]any(nil), false); string(b) != "null" {
		t.Errorf("nil map: %s", b)
	}
	// Not an object: passed through for llmux to judge.
	if b, _ := encodeRequest("{not json", true); string(b) != "{not json" {
		t.Errorf("rewrote %s", b)
	}
	if _, err := encodeRequest(map[string]any{"f": func() {}}, false); err == nil {
		t.Error("unmarshalable request encoded")
	}
}

func TestFailover(t *testing.T) {
	r := newTestRouter(t)
	for _, stream := range []bool{false, true} {
		req := chat("test/model", "provider", order("a", "b"),
			"mock", onServer("a", map[string]any{"status": 503}))
		var rt *Routing
		if stream {
			s, err := r.ChatCompletionStream(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			text, err := s.Text()
			if err != nil || text != "Hello from b." {
				t.Fatalf("stream: %q, %v", text, err)
			}
			rt = s.Routing()
		} else {
			resp, err := r.ChatCompletion(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Text() != "Hello from b." {
				t.Errorf("text %q", resp.Text())
			}
			rt = &resp.Routing
		}
		if rt.Endpoint != "b/default" || len(rt.Attempts) != 2 {
			t.Fatalf("stream=%v routing %+v", stream, rt)
		}
		a0, a1 := rt.Attempts[0], rt.Attempts[1]
		if a0.Endpoint != "a/default" || a0.Outcome != "server_error" || a0.Status == nil || *a0.Status != 503 ||
			a0.Error == nil || !strings.Contains(*a0.Error, "503") {
			t.Errorf("first attempt %+v", a0)
		}
		if a1.Endpoint != "b/default" || a1.Outcome != "success" {
			t.Errorf("second attempt %+v", a1)
		}
	}
}

func TestPinAndOrder(t *testing.T) {
	r := newTestRouter(t)
	ctx := context.Background()
	cases := []struct {
		name string
		req  map[string]any
		want string
	}{
		{"pin c", chat("test/model:c"), "c/default"},
		{"pin b", chat("test/model:b"), "b/default"},
		{"order provider", chat("test/model", "provider", order("c", "a")), "c/default"},
		{"order endpoint id", chat("test/model", "provider", order("b/default", "a")), "b/default"},
		{"price", chat("test/model", "provider",
			map[string]any{"routing": map[string]any{"type": "priority", "primary_factor": "price"}}), "b/default"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := r.ChatCompletion(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Routing.Endpoint != tc.want || len(resp.Routing.Attempts) != 1 {
				t.Errorf("routing %+v, want %s", resp.Routing, tc.want)
			}
		})
	}
	// A pin has no fallback outside its provider.
	_, err := r.ChatCompletion(ctx, chat("test/model:a", "mock", map[string]any{"status": 503}))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 503 || !ae.IsUpstream() || ae.Routing == nil ||
		len(ae.Routing.Attempts) == 0 || ae.Routing.Endpoint != "" {
		t.Fatalf("pinned 503: %v", err)
	}
	for _, at := range ae.Routing.Attempts {
		if at.Endpoint != "a/default" || at.Outcome != "server_error" {
			t.Errorf("pinned request went to %+v: %s", at, ae.Routing.Raw)
		}
	}
}

func TestErrors(t *testing.T) {
	r := newTestRouter(t)
	ctx := context.Background()

	t.Run("unknown model lists models", func(t *testing.T) {
		_, err := r.ChatCompletion(ctx, chat("nope/nope"))
		var le *Error
		if !errors.Is(err, ErrUnknownModel) || !errors.As(err, &le) || le.Code != ResultUnknownModel {
			t.Fatalf("err %v", err)
		}
		for _, m := range []string{"nope/nope", "test/model", "test/claude"} {
			if !strings.Contains(le.Message, m) {
				t.Errorf("message %q lacks %q", le.Message, m)
			}
		}
		if errors.Is(err, ErrInvalidConfig) {
			t.Error("unknown model matches ErrInvalidConfig")
		}
		_, err = r.ChatCompletionStream(ctx, chat("nope/nope"))
		if !errors.Is(err, ErrUnknownModel) {
			t.Errorf("stream: %v", err)
		}
	})
	t.Run("unknown provider and endpoint", func(t *testing.T) {
		_, err := r.ChatCompletion(ctx, chat("test/model:zzz"))
		if !errors.Is(err, ErrUnknownProvider) || !strings.Contains(err.Error(), "zzz") {
			t.Errorf("pin: %v", err)
		}
		_, err = r.ChatCompletion(ctx, chat("test/model", "provider", order("zzz/default")))
		if !errors.Is(err, ErrUnknownEndpoint) {
			t.Errorf("order: %v", err)
		}
	})
	t.Run("invalid request", func(t *testing.T) {
		_, err := r.ChatCompletion(ctx, "{not json")
		if !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("bad json: %v", err)
		}
		_, err = r.ChatCompletion(ctx, map[string]any{"model": "test/model"})
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "messages") {
			t.Errorf("no messages: %v", err)
		}
		_, err = r.ChatCompletion(ctx, nil)
		if !errors.Is(err, ErrNullArgument) {
			t.Errorf("nil request: %v", err)
		}
	})
	t.Run("upstream 400 is returned at once", func(t *testing.T) {
		_, err := r.ChatCompletion(ctx, chat("test/model", "provider", order("a", "b"),
			"mock", map[string]any{"status": 400}))
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("err %T %v", err, err)
		}
		if ae.Status != 400 || !ae.IsInvalidRequest() || ae.IsRateLimit() || ae.Message == "" || len(ae.Body) == 0 {
			t.Errorf("api error %+v", ae)
		}
		if ae.Routing == nil || len(ae.Routing.Attempts) != 1 || ae.Routing.Attempts[0].Endpoint != "a/default" {
			t.Errorf("routing %+v", ae.Routing)
		}
		var le *Error
		if errors.As(err, &le) {
			t.Error("APIError is also an *Error")
		}
	})
	t.Run("429 is a rate limit", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			req := chat("test/model:c", "mock", map[string]any{"status": 429})
			var err error
			if stream {
				var s *Stream
				s, err = r.ChatCompletionStream(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.Text()
			} else {
				_, err = r.ChatCompletion(ctx, req)
			}
			var ae *APIError
			if !errors.As(err, &ae) || !ae.IsRateLimit() || ae.Status != 429 || ae.Type != "rate_limit_error" {
				t.Errorf("stream=%v: %v", stream, err)
			}
		}
	})
}

func TestConfigErrors(t *testing.T) {
	cfg := map[string]any{
		"providers": []any{map[string]any{"slug": "a", "protocol": "openai", "base_url": "http://127.0.0.1:1/v1"}},
		"models": []any{map[string]any{"slug": "x/y", "endpoints": []any{
			map[string]any{"provider": "acme", "upstream_model": "m"}}}},
	}
	b, _ := json.Marshal(cfg)
	_, err := New(b)
	var le *Error
	if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &le) {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(le.Message, "models[0].endpoints[0].provider") || !strings.Contains(le.Message, "acme") {
		t.Errorf("message %q does not name the JSON path", le.Message)
	}
	if !strings.HasPrefix(err.Error(), "llmux: ") {
		t.Errorf("Error() = %q", err.Error())
	}

	if _, err := New([]byte("{")); !errors.Is(err, ErrInvalidConfig) && !errors.Is(err, ErrInvalidJSON) {
		t.Errorf("truncated config: %v", err)
	}
	if _, err := New(nil); !errors.Is(err, ErrNullArgument) {
		t.Errorf("nil config: %v", err)
	}
	if _, err := NewFromFile(filepath.Join(t.TempDir(), "missing.json")); err == nil ||
		!strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}

func TestNewFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "llmux.json")
	if err := os.WriteFile(path, testConfig(nil), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := NewFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	resp, err := r.ChatCompletion(context.Background(), chat("test/model:a"))
	if err != nil || resp.Text() != "Hello from a." {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestStats(t *testing.T) {
	r := newTestRouter(t)
	if _, err := r.ChatCompletion(context.Background(), chat("test/model:a")); err != nil {
		t.Fatal(err)
	}
	raw, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Endpoints []struct {
			ID       string `json:"id"`
			Provider string `json:"provider"`
			Model    string `json:"model"`
		} `json:"endpoints"`
		RequestsInFlight *int `json:"requests_in_flight"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if len(st.Endpoints) != 7 || st.RequestsInFlight == nil {
		t.Errorf("stats %s", raw)
	}
	found := false
	for _, e := range st.Endpoints {
		found = found || (e.ID == "a/default" && e.Model == "test/model")
	}
	if !found {
		t.Errorf("no a/default in %s", raw)
	}
}

func TestClosed(t *testing.T) {
	r, err := New(testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	ctx := context.Background()
	if _, err := r.ChatCompletion(ctx, chat("test/model")); !errors.Is(err, ErrClosed) {
		t.Errorf("ChatCompletion after Close: %v", err)
	}
	if _, err := r.ChatCompletionStream(ctx, chat("test/model")); !errors.Is(err, ErrClosed) {
		t.Errorf("stream after Close: %v", err)
	}
	if _, err := r.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v", err)
	}
}

func TestContextAlreadyDone(t *testing.T) {
	r := newTestRouter(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.ChatCompletion(ctx, chat("test/model")); !errors.Is(err, context.Canceled) {
		t.Errorf("ChatCompletion: %v", err)
	}
	if _, err := r.ChatCompletionStream(ctx, chat("test/model")); !errors.Is(err, context.Canceled) {
		t.Errorf("stream: %v", err)
	}
	if n := r.core.submitted.Load(); n != 0 {
		t.Errorf("%d requests submitted", n)
	}
}

func TestHealthExportImport(t *testing.T) {
	r := newTestRouter(t)
	ctx := context.Background()
	for range 3 {
		if _, err := r.ChatCompletion(ctx, chat("test/model:a")); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := r.HealthExport()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(snap) || !strings.Contains(string(snap), "a/default") {
		t.Fatalf("export %s", snap)
	}
	r2 := newTestRouter(t)
	n, err := r2.HealthImport(snap)
	if err != nil || n == 0 {
		t.Fatalf("import: %d, %v", n, err)
	}
	if _, err := r2.HealthImport([]byte("{not json")); !errors.Is(err, ErrInvalidJSON) {
		t.Errorf("malformed import: %v", err)
	}
	r3, err := New(testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	r3.Close()
	if _, err := r3.HealthExport(); !errors.Is(err, ErrClosed) {
		t.Errorf("export after Close: %v", err)
	}
	if _, err := r3.HealthImport(snap); !errors.Is(err, ErrClosed) {
		t.Errorf("import after Close: %v", err)
	}
}

func TestRequestTooLarge(t *testing.T) {
	r, err := New(testConfig(map[string]any{"max_request_bytes": 1000}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	big := chat("test/model", "messages", []map[string]any{{"role": "user", "content": strings.Repeat("x", 2000)}})
	if _, err := r.ChatCompletion(context.Background(), big); !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("err %v", err)
	}
}
