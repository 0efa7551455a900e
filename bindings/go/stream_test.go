package llmux

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// slow is a "mock" value for a 100-chunk stream with 20 ms between chunks
// (about 2 s in all).
var slow = map[string]any{"chunks": 100, "chunk_delay_ms": 20}

func TestStreamChunks(t *testing.T) {
	r := newTestRouter(t)
	s, err := r.ChatCompletionStream(context.Background(), chat("test/model", "provider", order("a")))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	n := 0
	for chunk, err := range s.Chunks() {
		if err != nil {
			t.Fatalf("stream error: %v", err)
		}
		var c struct {
			Object string `json:"object"`
		}
		if err := json.Unmarshal(chunk, &c); err != nil || c.Object != "chat.completion.chunk" {
			t.Errorf("chunk %s", chunk)
		}
		text.WriteString(ChunkText(chunk))
		n++
	}
	if text.String() != "Hello from a." {
		t.Errorf("text %q", text.String())
	}
	if n < 5 {
		t.Errorf("%d chunks", n)
	}
	if s.Err() != nil || s.Next() {
		t.Errorf("after the end: err %v", s.Err())
	}
	rt := s.Routing()
	if rt == nil {
		t.Fatal("no routing after the end")
	}
	if rt.Endpoint != "a/default" || len(rt.Attempts) != 1 || rt.Attempts[0].Outcome != "success" ||
		rt.FirstTokenMs == nil || *rt.FirstTokenMs <= 0 || rt.Usage == nil || rt.Usage.CompletionTokens == 0 ||
		rt.CostUSD == nil {
		t.Errorf("routing %s", rt.Raw)
	}
	s.Close() // after the end: harmless
}

func TestStreamNextAPI(t *testing.T) {
	r := newTestRouter(t)
	s, err := r.ChatCompletionStream(context.Background(),
		chat("test/model:b", "mock", map[string]any{"chunks": 3, "text": "abcdef"}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ID() == 0 || s.Routing() != nil {
		t.Errorf("id %d routing %v before the end", s.ID(), s.Routing())
	}
	var chunks []json.RawMessage
	for s.Next() {
		chunks = append(chunks, s.Chunk())
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	var text string
	for _, c := range chunks { // chunks stay valid after later Next calls
		text += ChunkText(c)
	}
	if text != "abcdef" || s.Routing() == nil || s.Routing().Endpoint != "b/default" {
		t.Errorf("text %q routing %v", text, s.Routing())
	}
}

func TestStreamErrorAfterFirstChunk(t *testing.T) {
	r := newTestRouter(t)
	// The connection drops after 2 chunks: no failover once a chunk arrived.
	s, err := r.ChatCompletionStream(context.Background(), chat("test/model", "provider", order("a", "b"),
		"mock", map[string]any{"fault": map[string]any{"drop_after": 2}}))
	if err != nil {
		t.Fatal(err)
	}
	chunks, errs := 0, 0
	var last error
	for chunk, err := range s.Chunks() {
		if err != nil {
			errs++
			last = err
			if chunk != nil {
				t.Error("error pair with a chunk")
			}
			continue
		}
		if errs > 0 {
			t.Error("chunk after the error")
		}
		chunks++
	}
	var ae *APIError
	if errs != 1 || !errors.As(last, &ae) || !errors.Is(s.Err(), last) {
		t.Fatalf("%d errors, last %v", errs, last)
	}
	if ae.Routing == nil || len(ae.Routing.Attempts) != 1 || ae.Routing.Attempts[0].Endpoint != "a/default" {
		t.Errorf("routing %+v", ae.Routing)
	}
	if chunks < 2 || s.Routing() != ae.Routing {
		t.Errorf("%d chunks, routing %v", chunks, s.Routing())
	}
}

func TestStreamCancelMidStream(t *testing.T) {
	r := newTestRouter(t)
	for _, useNext := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := r.ChatCompletionStream(ctx, chat("test/model:a", "mock", slow))
		if err != nil {
			t.Fatal(err)
		}
		var cancelledAt time.Time
		chunks, terminals := 0, 0
		var last error
		if useNext {
			for s.Next() {
				chunks++
				if chunks == 3 {
					cancelledAt = time.Now()
					cancel()
				}
			}
			last, terminals = s.Err(), 1
		} else {
			for _, err := range s.Chunks() {
				if err != nil {
					terminals++
					last = err
					continue
				}
				chunks++
				if chunks == 3 {
					cancelledAt = time.Now()
					cancel()
				}
			}
		}
		took := time.Since(cancelledAt)
		if !errors.Is(last, context.Canceled) || terminals != 1 {
			t.Fatalf("next=%v: %d terminals, err %v", useNext, terminals, last)
		}
		if took > time.Second || chunks > 20 {
			t.Errorf("next=%v: ended %v after cancel, %d chunks", useNext, took, chunks)
		}
		rt := s.Routing()
		if rt == nil || len(rt.Attempts) == 0 || rt.Attempts[len(rt.Attempts)-1].Outcome != "cancelled" {
			t.Errorf("routing after cancel: %+v", rt)
		}
		if s.Next() || !errors.Is(s.Err(), context.Canceled) {
			t.Error("stream did not stay ended")
		}
	}
}

func TestStreamDeadline(t *testing.T) {
	r := newTestRouter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	s, err := r.ChatCompletionStream(ctx, chat("test/model:a", "mock", slow))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Text()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("took %v", took)
	}
}

func TestCompletionCancelAndDeadline(t *testing.T) {
	r := newTestRouter(t)
	// The upstream waits 3 s before it answers.
	req := chat("test/model:b", "mock", map[string]any{"first_token_delay_ms": 3000})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.ChatCompletion(ctx, req)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("deadline: %v after %v", err, time.Since(start))
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	start = time.Now()
	_, err = r.ChatCompletion(ctx2, req)
	if err != context.Canceled || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("cancel: %v after %v", err, time.Since(start))
	}
}

// A context cancelled while nobody reads the stream still cancels the
// request in llmux: its terminal event is there for the next poll.
func TestStreamCancelWithoutReader(t *testing.T) {
	r := newTestRouter(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := r.ChatCompletionStream(ctx, chat("test/model:a", "mock", slow))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	time.Sleep(200 * time.Millisecond) // nobody polls meanwhile
	ended := func() bool {
		r.core.mu.Lock()
		defer r.core.mu.Unlock()
		_, live := r.core.pending[s.ID()]
		return !live
	}
	if !drive(r.core, time.Second, ended) { // the stream alone would run 1.7 s more
		t.Fatal("request still running 1 s after its context was cancelled")
	}
	if _, err := s.Text(); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}

func TestStreamCloseAndBreak(t *testing.T) {
	r := newTestRouter(t)
	ctx := context.Background()

	// Breaking out of the range closes the stream.
	s, err := r.ChatCompletionStream(ctx, chat("test/model:a", "mock", slow))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range s.Chunks() {
		break
	}
	if s.Next() || !errors.Is(s.Err(), ErrStreamClosed) {
		t.Errorf("after break: err %v", s.Err())
	}

	// Close from another goroutine wakes a waiting Next.
	s, err = r.ChatCompletionStream(ctx, chat("test/model:a", "mock", map[string]any{"first_token_delay_ms": 3000}))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, func() { s.Close() })
	if s.Next() || !errors.Is(s.Err(), ErrStreamClosed) {
		t.Errorf("after Close: err %v", s.Err())
	}
	s.Close()
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("took %v", took)
	}
	// checkIdle (cleanup) verifies both requests ended in llmux.
}
