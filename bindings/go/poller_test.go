package llmux

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The tests below run each case on an engine with worker threads and on a
// host-driven one ("worker_threads": 0), where upstream I/O advances only
// while some goroutine polls: a goroutine left waiting while nobody holds
// the poller role (a lost wake-up) stalls every request there, and the
// watchdog reports it with every goroutine's stack.

var pollerModes = []struct {
	name    string
	threads int
}{{"workers", 2}, {"host-driven", 0}}

func newModeRouter(t *testing.T, threads int) *Router {
	t.Helper()
	r, err := New(testConfig(map[string]any{"worker_threads": threads}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkIdle(t, r)
		r.Close()
	})
	return r
}

// within runs fn and fails the test, printing every goroutine, when it has
// not returned after limit.
func within(t *testing.T, limit time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(limit):
		buf := make([]byte, 1<<20)
		t.Fatalf("still waiting after %v (a lost wake-up?)\n%s", limit, buf[:runtime.Stack(buf, true)])
	}
}

// roleFree checks that no goroutine kept the poller role after the work.
func roleFree(t *testing.T, r *Router) {
	t.Helper()
	if len(r.core.role) != 1 {
		t.Error("the poller role was not handed back")
	}
}

// wantText is the text a request of this test expects back; the mock
// splits it over the stream's chunks, so text that arrives whole shows that
// no event went to another request and none was lost or doubled.
func wantText(w, i int) string { return fmt.Sprintf("w%d-i%d-abcdefghij", w, i) }

// Many goroutines at once, streams and completions mixed, with delays that
// interleave their events: every request gets exactly its own events.
func TestPollerManyWaiters(t *testing.T) {
	for _, m := range pollerModes {
		t.Run(m.name, func(t *testing.T) {
			r := newModeRouter(t, m.threads)
			const workers, perWorker = 12, 15
			errs := make(chan error, workers*perWorker)
			within(t, 20*time.Second, func() {
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range perWorker {
							if err := pollerOne(r, w, i); err != nil {
								errs <- fmt.Errorf("worker %d request %d: %w", w, i, err)
							}
						}
					}()
				}
				wg.Wait()
			})
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			roleFree(t, r)
		})
	}
}

func pollerOne(r *Router, w, i int) error {
	want := wantText(w, i)
	mock := map[string]any{"text": want, "chunks": 1 + (w+i)%5,
		"chunk_delay_ms": (w * i) % 3, "first_token_delay_ms": (w + 2*i) % 4}
	req := chat("test/model:a", "mock", mock)
	ctx := context.Background()
	if (w+i)%2 == 0 {
		s, err := r.ChatCompletionStream(ctx, req)
		if err != nil {
			return err
		}
		got, err := s.Text()
		if err != nil || got != want || s.Routing() == nil {
			return fmt.Errorf("stream: %q, %v", got, err)
		}
		return nil
	}
	resp, err := r.ChatCompletion(ctx, req)
	if err != nil || resp.Text() != want {
		return fmt.Errorf("completion: %v", err)
	}
	return nil
}

// Waiting goroutines (one of them polling for all) are cancelled mid-wait,
// every other one: the cancelled ones return at once with their context's
// error (not their response, which comes 400 ms later), the others still
// get theirs, so the role moved on from any cancelled poller.
func TestPollerCancelMidWait(t *testing.T) {
	for _, m := range pollerModes {
		t.Run(m.name, func(t *testing.T) {
			r := newModeRouter(t, m.threads)
			const n = 8
			errs := make(chan error, n)
			within(t, 20*time.Second, func() {
				var wg sync.WaitGroup
				for k := range n {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					cancelIt := k%2 == 0
					if cancelIt {
						time.AfterFunc(time.Duration(50+10*k)*time.Millisecond, cancel)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- cancelOne(r, ctx, k, cancelIt)
					}()
				}
				wg.Wait()
			})
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			roleFree(t, r)
		})
	}
}

func cancelOne(r *Router, ctx context.Context, k int, cancelIt bool) error {
	want := wantText(k, 0)
	// Slow enough that the cancel lands while the goroutine waits.
	mock := map[string]any{"text": want, "chunks": 4, "first_token_delay_ms": 400, "chunk_delay_ms": 20}
	req := chat("test/model:b", "mock", mock)
	var got string
	var err error
	if k%4 < 2 {
		var s *Stream
		if s, err = r.ChatCompletionStream(ctx, req); err == nil {
			got, err = s.Text()
		}
	} else {
		var resp *Response
		if resp, err = r.ChatCompletion(ctx, req); err == nil {
			got = resp.Text()
		}
	}
	switch {
	case cancelIt && !errors.Is(err, context.Canceled):
		return fmt.Errorf("request %d: cancelled, ended with %v", k, err)
	case !cancelIt && (err != nil || got != want):
		return fmt.Errorf("request %d: %q, %v", k, got, err)
	}
	return nil
}

// Close while goroutines wait (streams, completions, a stream nobody
// reads): each ends with ErrClosed, Close returns, and a request started
// afterwards is refused.
func TestPollerCloseWhileWaiting(t *testing.T) {
	for _, m := range pollerModes {
		t.Run(m.name, func(t *testing.T) {
			r, err := New(testConfig(map[string]any{"worker_threads": m.threads}))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			hold := map[string]any{"first_token_delay_ms": 5000}
			const n = 6
			results := make(chan error, n)
			for k := range n {
				go func() {
					if k%2 == 0 {
						_, err := r.ChatCompletion(ctx, chat("test/model:a", "mock", hold))
						results <- err
						return
					}
					s, err := r.ChatCompletionStream(ctx, chat("test/model:a", "mock", hold))
					if err == nil {
						_, err = s.Text()
					}
					results <- err
				}()
			}
			if _, err := r.ChatCompletionStream(ctx, chat("test/model:b", "mock", hold)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			within(t, 10*time.Second, func() { r.Close() })
			within(t, 10*time.Second, func() {
				for range n {
					if err := <-results; !errors.Is(err, ErrClosed) {
						t.Errorf("ended with %v, want ErrClosed", err)
					}
				}
			})
			if _, err := r.ChatCompletion(ctx, chat("test/model:a")); !errors.Is(err, ErrClosed) {
				t.Errorf("after Close: %v", err)
			}
			c := r.core
			if c.submitted.Load() != c.terminals.Load() {
				t.Errorf("%d submitted, %d terminal events", c.submitted.Load(), c.terminals.Load())
			}
		})
	}
}

// A goroutine that stops reading its stream holds up nobody: other
// requests complete meanwhile (on a host-driven engine their polling also
// advances the stalled stream), and the stream, read later, has every
// chunk in order.
func TestPollerStalledReader(t *testing.T) {
	for _, m := range pollerModes {
		t.Run(m.name, func(t *testing.T) {
			r := newModeRouter(t, m.threads)
			ctx := context.Background()
			want := "stalled-stream-0123456789-abcdefghij"
			s, err := r.ChatCompletionStream(ctx, chat("test/model:c", "mock",
				map[string]any{"text": want, "chunks": 30, "chunk_delay_ms": 2}))
			if err != nil {
				t.Fatal(err)
			}
			if !s.Next() { // one chunk read, then the reader stalls
				t.Fatalf("first chunk: %v", s.Err())
			}
			first := ChunkText(s.Chunk())
			within(t, 20*time.Second, func() {
				for i := range 40 {
					if err := pollerOne(r, 99, i); err != nil {
						t.Error(err)
					}
				}
			})
			rest, err := s.Text()
			if err != nil || first+rest != want {
				t.Errorf("stalled stream: %q, %v", first+rest, err)
			}
			roleFree(t, r)
		})
	}
}

// A goroutine that polls for everybody and then stops waiting (its stop
// channel closed, no event of its own) hands the role on: on a
// host-driven engine nothing else would advance the next request.
func TestPollerStopHandsRoleOn(t *testing.T) {
	r := newModeRouter(t, 0)
	c := r.core
	idle := newCall(1 << 62) // a request that never gets an event
	stop := make(chan struct{})
	woke := make(chan bool)
	go func() { woke <- c.await(idle, stop, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.role) != 0 { // the waiter took the role (nobody else polls)
		if time.Now().After(deadline) {
			t.Fatal("the only waiter did not take the poller role")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	if <-woke {
		t.Error("await reported news for a request without events")
	}
	within(t, 10*time.Second, func() {
		if err := pollerOne(r, 1, 1); err != nil {
			t.Error(err)
		}
	})
	roleFree(t, r)
}
