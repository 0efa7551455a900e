package llmux

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The golden terminal events (tests/fixtures/terminal_done.json and
// terminal_error.json, captured from the engine; a Rust test keeps them
// current) read through this binding's own decoding.

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "tests", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDoneFixtureDecodes(t *testing.T) {
	data := readFixture(t, "terminal_done.json")
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		t.Fatal(err)
	}
	// The scan finds the same members encoding/json does.
	response, routing, ok := splitDone(data)
	if !ok || !bytes.Equal(response, members["response"]) || !bytes.Equal(routing, members["routing"]) {
		t.Fatalf("splitDone: ok=%v response=%s routing=%s", ok, response, routing)
	}
	resp, err := parseDone(3, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Text(); got != "Hello from steady." {
		t.Errorf("Text() = %q", got)
	}
	r := resp.Routing
	if r.Model != "test/model" || r.Endpoint != "steady/default" || r.Provider != "steady" || r.UpstreamModel != "up-steady" {
		t.Errorf("routing = %+v", r)
	}
	if len(r.Attempts) != 2 || r.Attempts[0].Outcome != "server_error" || *r.Attempts[0].Status != 503 ||
		r.Attempts[1].Outcome != "success" || r.Attempts[1].Error != nil {
		t.Errorf("attempts = %+v", r.Attempts)
	}
	if r.Usage == nil || r.Usage.TotalTokens != r.Usage.PromptTokens+r.Usage.CompletionTokens {
		t.Errorf("usage = %+v", r.Usage)
	}
	if r.CostUSD == nil || r.FirstTokenMs == nil || r.LatencyMs <= 0 {
		t.Errorf("cost, first token, latency = %v %v %v", r.CostUSD, r.FirstTokenMs, r.LatencyMs)
	}
	if !bytes.Equal(r.Raw, members["routing"]) {
		t.Errorf("Raw is not the record as written")
	}
}

func TestErrorFixtureDecodes(t *testing.T) {
	data := readFixture(t, "terminal_error.json")
	e := parseAPIError(data)
	if e.Status != 503 || e.Kind != "upstream" || !e.IsUpstream() || e.Type != "upstream_error" {
		t.Errorf("error = %+v", e)
	}
	if !bytes.Contains([]byte(e.Message), []byte("HTTP 503")) {
		t.Errorf("message = %q", e.Message)
	}
	r := e.Routing
	if r == nil || r.Endpoint != "" || r.Usage != nil || r.CostUSD != nil || len(r.Attempts) != 2 {
		t.Fatalf("routing = %+v", r)
	}
	if r.Attempts[0].Outcome != "rate_limited" || r.Attempts[1].Outcome != "server_error" {
		t.Errorf("attempts = %+v", r.Attempts)
	}
}
