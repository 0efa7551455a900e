package llmux

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// 16 goroutines x 20 requests on one Router: streams and completions,
// every fifth cancelled mid-way, every seventh failing over. Every request
// must end exactly once with the expected result.
func TestStress(t *testing.T) {
	r := newTestRouter(t)
	const workers, perWorker = 16, 20
	var ok, cancelled, failedOver atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				if err := stressOne(r, w, i, &ok, &cancelled, &failedOver); err != nil {
					errs <- fmt.Errorf("worker %d request %d: %w", w, i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if total := ok.Load() + cancelled.Load(); total != workers*perWorker {
		t.Errorf("%d ok + %d cancelled != %d", ok.Load(), cancelled.Load(), workers*perWorker)
	}
	if failedOver.Load() == 0 || cancelled.Load() == 0 {
		t.Errorf("%d failovers, %d cancellations: the mix did not happen", failedOver.Load(), cancelled.Load())
	}
	checkIdle(t, r)
	// Requests whose context was cancelled before the call are not submitted.
	if got := r.core.submitted.Load(); got > workers*perWorker || got < uint64(ok.Load()) {
		t.Errorf("%d submitted, %d ok", got, ok.Load())
	}
}

func stressOne(r *Router, w, i int, ok, cancelled, failedOver *atomic.Int64) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := (w+i)%2 == 0
	cancelIt := i%5 == 4
	failover := i%7 == 3
	mock := map[string]any{"chunks": 4}
	switch {
	case cancelIt:
		mock = map[string]any{"chunks": 50, "chunk_delay_ms": 10}
		time.AfterFunc(time.Duration(5+w%4*10)*time.Millisecond, cancel)
	}
	req := chat("test/model", "provider", order("a", "b", "c"), "mock", mock)
	if failover {
		// c always answers 503; once its circuit opens, llmux tries b first.
		req = chat("test/model", "provider", order("c", "b"), "mock", onServer("c", map[string]any{"status": 503}))
	}
	var rt *Routing
	var err error
	if stream {
		var s *Stream
		s, err = r.ChatCompletionStream(ctx, req)
		if err != nil {
			// Under load the cancel timer can fire before the call: the
			// Router then refuses the request without submitting it.
			if cancelIt && errors.Is(err, context.Canceled) {
				cancelled.Add(1)
				return nil
			}
			return err
		}
		terminals := 0
		for _, e := range s.Chunks() {
			if e != nil {
				terminals++
				err = e
			}
		}
		if terminals > 1 {
			return fmt.Errorf("%d terminal errors", terminals)
		}
		rt = s.Routing()
	} else {
		var resp *Response
		resp, err = r.ChatCompletion(ctx, req)
		if resp != nil {
			rt = &resp.Routing
		}
	}
	switch {
	case cancelIt && errors.Is(err, context.Canceled):
		cancelled.Add(1)
		return nil
	case err != nil:
		return err
	case rt == nil:
		return errors.New("no routing record")
	}
	ok.Add(1)
	if failover {
		if rt.Endpoint != "b/default" || len(rt.Attempts) == 0 || len(rt.Attempts) > 2 {
			return fmt.Errorf("failover routing %s", rt.Raw)
		}
		if len(rt.Attempts) == 2 {
			if a := rt.Attempts[0]; a.Endpoint != "c/default" || a.Status == nil || *a.Status != 503 {
				return fmt.Errorf("failover routing %s", rt.Raw)
			}
			failedOver.Add(1)
		}
	} else if rt.Endpoint != "a/default" {
		return fmt.Errorf("routing %s", rt.Raw)
	}
	return nil
}

func TestCloseWithRequestsInFlight(t *testing.T) {
	r, err := New(testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var streams []*Stream
	for range 4 {
		s, err := r.ChatCompletionStream(ctx, chat("test/model:a", "mock", slow))
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	results := make(chan error, 8)
	for _, s := range streams {
		go func() {
			_, err := s.Text()
			results <- err
		}()
	}
	for range 2 { // non-streaming requests waiting on a slow upstream
		go func() {
			_, err := r.ChatCompletion(ctx, chat("test/model:b", "mock", map[string]any{"first_token_delay_ms": 5000}))
			results <- err
		}()
	}
	// Plus one stream nobody reads.
	if _, err := r.ChatCompletionStream(ctx, chat("test/model:c", "mock", slow)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)

	start := time.Now()
	var wg sync.WaitGroup
	for range 3 { // concurrent Close calls: all return once the engine is freed
		wg.Add(1)
		go func() { defer wg.Done(); r.Close() }()
	}
	wg.Wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v", took)
	}
	for range 6 {
		select {
		case err := <-results:
			var ae *APIError
			if !errors.Is(err, ErrClosed) || !errors.As(err, &ae) || !ae.IsCancelled() {
				t.Errorf("request ended with %v, want a cancelled APIError wrapping ErrClosed", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("a request did not end after Close")
		}
	}
	c := r.core
	if c.eng != nil || len(c.pending) != 0 || c.submitted.Load() != c.terminals.Load() {
		t.Errorf("after Close: eng %v, %d pending, %d submitted, %d terminals",
			c.eng, len(c.pending), c.submitted.Load(), c.terminals.Load())
	}
}

// A Router dropped without Close is closed by its finalizer: the engine is
// freed, without a crash.
func TestFinalizer(t *testing.T) {
	before := finalizedRouters.Load()
	done := func() chan struct{} {
		r, err := New(testConfig(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ChatCompletion(context.Background(), chat("test/model:a")); err != nil {
			t.Fatal(err)
		}
		return r.core.freed
	}()
	deadline := time.Now().Add(10 * time.Second)
	for finalizedRouters.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the finalizer did not run")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the engine was not freed")
	}
}
