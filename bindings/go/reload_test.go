package llmux

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// reloadWait polls ok for up to 10 s.
func reloadWait(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reloadConfig is testConfig changed by mutate.
func reloadConfig(t *testing.T, mutate func(cfg map[string]any)) []byte {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(testConfig(nil), &cfg); err != nil {
		t.Fatal(err)
	}
	mutate(cfg)
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReloadSwapsTheCatalogAndKeepsStreams(t *testing.T) {
	r := newTestRouter(t)
	ctx := context.Background()
	// Streams in flight on c, which the reload removes.
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := r.ChatCompletionStream(ctx, chat("test/model:c", "stream", true,
				"mock", map[string]any{"chunks": 6, "chunk_delay_ms": 30}))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			for s.Next() {
			}
			errs <- s.Err()
		}()
	}
	next := reloadConfig(t, func(cfg map[string]any) {
		models := cfg["models"].([]any)
		m := models[0].(map[string]any)
		m["endpoints"] = m["endpoints"].([]any)[:2] // drop c
		cfg["models"] = append(models, map[string]any{"slug": "test/new",
			"endpoints": []any{map[string]any{"provider": "b", "upstream_model": "up-b"}}})
	})
	reloadWait(t, func() bool {
		var s struct {
			InFlight int `json:"requests_in_flight"`
		}
		raw, _ := r.Stats()
		_ = json.Unmarshal(raw, &s)
		return s.InFlight == 10
	})
	rep, err := r.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Generation != 1 || len(rep.Added) != 1 || rep.Added[0].Model != "test/new" ||
		len(rep.Removed) != 1 || rep.Removed[0].Endpoint != "c/default" {
		t.Fatalf("report %+v", rep)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a stream on the removed endpoint failed: %v", err)
		}
	}
	if _, err := r.ChatCompletion(ctx, chat("test/new")); err != nil {
		t.Errorf("new model: %v", err)
	}
	if _, err := r.ChatCompletion(ctx, chat("test/model:c")); err == nil {
		t.Error("c is gone, the request should be refused")
	}
}

func TestReloadInvalidChangesNothing(t *testing.T) {
	r := newTestRouter(t)
	bad := reloadConfig(t, func(cfg map[string]any) {
		cfg["providers"].([]any)[0].(map[string]any)["base_url"] = "not a url"
	})
	_, err := r.Reload(bad)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "base_url") {
		t.Fatalf("invalid reload: %v", err)
	}
	raw, _ := r.Stats()
	if !strings.Contains(string(raw), `"reloads":0`) {
		t.Errorf("stats %s", raw)
	}
	if _, err := r.ChatCompletion(context.Background(), chat("test/model:a")); err != nil {
		t.Error(err)
	}
	closed, err := New(testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := closed.Reload(bad); !errors.Is(err, ErrClosed) {
		t.Errorf("reload after Close: %v", err)
	}
}
