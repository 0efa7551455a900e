package llmux

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWithTraceparent: a request started with WithTraceparent is exported
// (OTLP/HTTP protobuf, to a collector on 127.0.0.1) in the caller's trace,
// under the caller's span; a malformed traceparent is refused at once.
// (gateway/tests/traces decodes the spans with the published protobuf
// definitions; here the trace and parent ids are found in the raw bytes.)
func TestWithTraceparent(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		got = append(got, b...)
		mu.Unlock()
		w.Header().Set("content-type", "application/x-protobuf")
	}))
	defer collector.Close()
	otlp := map[string]any{"otlp": map[string]any{"endpoint": collector.URL, "flush_interval_ms": 50}}
	r, err := New(testConfig(map[string]any{"telemetry": otlp}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const traceID, parent = "5af7183fb1d4cf5f4bd1a0e2c3d4e5f6", "b7ad6b7169203331"
	ctx := WithTraceparent(context.Background(), "00-"+traceID+"-"+parent+"-01")
	if _, err := r.ChatCompletion(ctx, chat("test/model", "provider", order("a"))); err != nil {
		t.Fatal(err)
	}
	tid, _ := hex.DecodeString(traceID)
	pid, _ := hex.DecodeString(parent)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		ok := bytes.Contains(got, tid) && bytes.Contains(got, pid) && bytes.Contains(got, []byte("chat test/model"))
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no span of the caller's trace under the caller's span reached the collector")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, bad := range []string{"garbage", "00-" + traceID + "-" + strings.Repeat("0", 16) + "-01", "00-a\x00b"} {
		_, err := r.ChatCompletion(WithTraceparent(context.Background(), bad), chat("test/model"))
		var e *Error
		if !errors.As(err, &e) || e.Code != ResultInvalidArgument || !strings.Contains(e.Message, "traceparent") {
			t.Errorf("traceparent %q: %v, want a clear ResultInvalidArgument", bad, err)
		}
	}
	// An empty traceparent is no parent.
	if _, err := r.ChatCompletion(WithTraceparent(context.Background(), ""), chat("test/model")); err != nil {
		t.Errorf("empty traceparent: %v", err)
	}
}
