package llmux

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The mock upstream fleet every test talks to: servers a, b, c (OpenAI
// providers a, b, c) and d (Anthropic provider anth), all healthy by default;
// tests inject faults per request through the body's "mock" field.
var (
	fleetURLs map[string]string
	fleetPath string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	fleetPath = os.Getenv("LLMUX_FLEET")
	if fleetPath == "" {
		fleetPath = filepath.Join("..", "..", "target", "debug", "llmux-fleet")
	}
	if abs, err := filepath.Abs(fleetPath); err == nil {
		fleetPath = abs
	}
	stop, urls, err := startFleet(fleetPath, []string{"a", "b", "c", "d"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot start the mock fleet (%v); build it with "+
			"`cargo build -p llmux-fleet` or set LLMUX_FLEET\n", err)
		return 1
	}
	defer stop()
	fleetURLs = urls
	return m.Run()
}

// startFleet runs llmux-fleet with the named servers; stop closes its stdin
// (it exits on EOF) and waits for it.
func startFleet(path string, names []string) (stop func(), urls map[string]string, err error) {
	type server struct {
		Name     string          `json:"name"`
		Behavior json.RawMessage `json:"behavior"`
	}
	var spec struct {
		Servers []server `json:"servers"`
	}
	for _, n := range names {
		spec.Servers = append(spec.Servers, server{Name: n, Behavior: json.RawMessage(`{}`)})
	}
	cfg, _ := json.Marshal(spec)
	cmd := exec.Command(path, "--config", string(cfg), "--exit-on-stdin-eof")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop = func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("reading the fleet's listing: %w", err)
	}
	go io.Copy(io.Discard, stdout)
	var listing struct {
		Servers []struct {
			Name    string `json:"name"`
			BaseURL string `json:"base_url"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(line, &listing); err != nil {
		stop()
		return nil, nil, fmt.Errorf("fleet listing %q: %w", line, err)
	}
	urls = map[string]string{}
	for _, s := range listing.Servers {
		urls[s.Name] = s.BaseURL
	}
	return stop, urls, nil
}

// testConfig is a config with model test/model on providers a, b, c
// (prices a 1/2, b 0.5/1, c 2/4 USD per million tokens), model
// test/claude on the Anthropic provider anth, and model test/mixed on
// anth then a. Keys of extra are set at the top level.
func testConfig(extra map[string]any) []byte {
	providers := []map[string]any{}
	for _, n := range []string{"a", "b", "c"} {
		providers = append(providers, map[string]any{
			"slug": n, "protocol": "openai", "base_url": fleetURLs[n] + "/v1", "api_key": "sk-" + n,
		})
	}
	providers = append(providers, map[string]any{
		"slug": "anth", "protocol": "anthropic", "base_url": fleetURLs["d"], "api_key": "sk-anth",
	}, map[string]any{
		"slug": "resp", "protocol": "responses", "base_url": fleetURLs["d"] + "/v1", "api_key": "sk-resp",
	})
	ep := func(p string, prompt, completion float64) map[string]any {
		return map[string]any{"provider": p, "upstream_model": "up-" + p,
			"price": map[string]any{"prompt": prompt, "completion": completion}}
	}
	cfg := map[string]any{
		"providers": providers,
		"models": []map[string]any{
			{"slug": "test/model", "endpoints": []any{ep("a", 1, 2), ep("b", 0.5, 1), ep("c", 2, 4)}},
			{"slug": "test/claude", "endpoints": []any{ep("anth", 3, 15)}},
			{"slug": "test/mixed", "endpoints": []any{ep("anth", 3, 15), ep("a", 1, 2)}},
			{"slug": "test/responses", "endpoints": []any{ep("resp", 1, 2)}},
		},
		"health":         map[string]any{"explore_ratio": 0.0},
		"worker_threads": 2,
	}
	for k, v := range extra {
		cfg[k] = v
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return b
}

// newTestRouter builds a Router on testConfig and, at cleanup, checks that
// every request got exactly one terminal event and nothing was left over,
// then closes it.
func newTestRouter(t testing.TB) *Router {
	t.Helper()
	r, err := New(testConfig(nil))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		checkIdle(t, r)
		r.Close()
	})
	return r
}

// checkIdle polls (briefly, as a waiting request would) until every
// submitted request has had its one terminal event delivered and no event
// is parked without a request. Terminal events of requests nobody waits
// for (a cancelled call, a closed stream) are routed by the next poll.
func checkIdle(t testing.TB, r *Router) {
	t.Helper()
	c := r.core
	idle := func() bool {
		c.mu.Lock()
		pending, early := len(c.pending), len(c.early)
		c.mu.Unlock()
		return pending == 0 && early == 0 && c.submitted.Load() == c.terminals.Load()
	}
	if !drive(c, 5*time.Second, idle) {
		c.mu.Lock()
		pending, early := len(c.pending), len(c.early)
		c.mu.Unlock()
		t.Errorf("router not idle: %d pending, %d ids with parked events, %d submitted, %d terminal events",
			pending, early, c.submitted.Load(), c.terminals.Load())
	}
}

// drive takes the poller role (as a waiting request does) and polls until
// cond holds; false when limit passed first.
func drive(c *core, limit time.Duration, cond func() bool) bool {
	expired := make(chan struct{})
	timer := time.AfterFunc(limit, func() { close(expired) })
	defer timer.Stop()
	for !cond() {
		select {
		case <-expired:
			return cond()
		case <-c.role:
			c.lead(cond, expired, nil)
		case <-time.After(5 * time.Millisecond): // another goroutine polls
		}
	}
	return true
}

// chat is an OpenAI request for model; the "mock" entry (if any) steers
// the fleet for this request only.
func chat(model string, kv ...any) map[string]any {
	req := map[string]any{
		"model":    model,
		"messages": []map[string]any{{"role": "user", "content": "hello"}},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req[kv[i].(string)] = kv[i+1]
	}
	return req
}

// order routes through exactly these endpoints / providers, in order.
func order(ids ...string) map[string]any {
	return map[string]any{"routing": map[string]any{"type": "order", "providers": ids}}
}

// onServer is a "mock" value that applies behavior b on server name only.
func onServer(name string, b map[string]any) map[string]any {
	return map[string]any{"servers": map[string]any{name: b}}
}
