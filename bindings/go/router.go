package llmux

/*
#include "llmux.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Version is the version of the linked llmux library, e.g. "0.1.0".
func Version() string { return cVersion() }

// closeDrainTimeout bounds how long Close waits for cancelled requests to
// deliver their terminal events before it frees the engine anyway.
const closeDrainTimeout = 5 * time.Second

// Router is an llmux engine: a catalog of models and providers and live
// health. It has no goroutine of its own: a goroutine waiting for its
// request polls llmux itself (see poller.go). All methods are safe for
// concurrent use. Close it when done; a Router that becomes
// unreachable without Close is closed by a finalizer, as a last resort.
type Router struct {
	core      *core
	closeOnce sync.Once
}

// core is what in-flight requests share. It holds no reference to its
// Router, so an unreachable Router can be finalized.
type core struct {
	// cmu guards eng: every C call holds it for reading, llmux_engine_free
	// for writing, so the engine is never freed under a call.
	cmu sync.RWMutex
	eng *C.llmux_engine

	// mu guards the request tables and the closing state.
	mu      sync.Mutex
	closing bool
	pending map[uint64]*call      // registered, no terminal yet
	early   map[uint64][]rawEvent // events that arrived before their request registered
	drained chan struct{}         // closed once pending is empty while closing

	// role holds the poller token while nobody polls (capacity 1); the
	// goroutine that takes it owns buf and polls until its own request has
	// news, then puts it back. Once stop is set the token is not put back.
	role  chan struct{}
	buf   *pollBuffer
	evs   []rawEvent // the poller's reusable batch
	stop  atomic.Bool
	freed chan struct{} // closed once the engine is freed

	// Counters for tests: requests submitted, terminal events delivered.
	submitted atomic.Uint64
	terminals atomic.Uint64
}

// New builds a Router from JSON config (see the llmux README for the
// format). A config that does not load returns an *Error with code
// ResultInvalidConfig whose message names the JSON path of each problem.
func New(configJSON []byte) (*Router, error) {
	eng, err := cEngineNew(configJSON)
	if err != nil {
		return nil, err
	}
	return newRouter(eng), nil
}

// NewFromFile builds a Router from a JSON config file.
func NewFromFile(path string) (*Router, error) {
	eng, err := cEngineNewFromFile(path)
	if err != nil {
		return nil, err
	}
	return newRouter(eng), nil
}

// finalizedRouters counts Routers closed by the finalizer (for tests).
var finalizedRouters atomic.Int64

func newRouter(eng *C.llmux_engine) *Router {
	c := &core{
		eng:     eng,
		pending: make(map[uint64]*call),
		early:   make(map[uint64][]rawEvent),
		role:    make(chan struct{}, 1),
		buf:     newPollBuffer(),
		freed:   make(chan struct{}),
	}
	c.role <- struct{}{}
	r := &Router{core: c}
	runtime.SetFinalizer(r, func(r *Router) {
		finalizedRouters.Add(1)
		r.Close()
	})
	return r
}

// Close cancels every request in flight (each ends with an error wrapping
// ErrClosed), waits for their terminal events (polling for them), stops
// polling and frees the engine. It is idempotent and safe to call
// concurrently; later calls wait for the first to finish. It always
// returns nil.
func (r *Router) Close() error {
	if r == nil || r.core == nil {
		return nil
	}
	r.closeOnce.Do(func() {
		r.core.shutdown()
		runtime.SetFinalizer(r, nil)
	})
	return nil
}

// Stats returns llmux's JSON snapshot of every endpoint: first-token
// latency and throughput averages, error rate, in-flight count, counters,
// circuit state, rate-limit time left and price.
func (r *Router) Stats() (json.RawMessage, error) {
	c := r.core
	c.cmu.RLock()
	defer c.cmu.RUnlock()
	if c.eng == nil {
		return nil, ErrClosed
	}
	out, err := cStats(c.eng)
	runtime.KeepAlive(r)
	return out, err
}

// HealthExport returns the health of every endpoint (latency and
// throughput averages, recent first-token latencies, error rate, ejections,
// open circuits, pending Retry-After) as JSON, for HealthImport in a later
// run so that a restarted program starts warm.
func (r *Router) HealthExport() (json.RawMessage, error) {
	c := r.core
	c.cmu.RLock()
	defer c.cmu.RUnlock()
	if c.eng == nil {
		return nil, ErrClosed
	}
	out, err := cHealthExport(c.eng)
	runtime.KeepAlive(r)
	return out, err
}

// HealthImport restores health written by HealthExport and returns how
// many endpoints it restored (entries for endpoints this Router's catalog
// does not have are skipped). Malformed JSON gives ErrInvalidJSON.
func (r *Router) HealthImport(data []byte) (int, error) {
	c := r.core
	c.cmu.RLock()
	defer c.cmu.RUnlock()
	if c.eng == nil {
		return 0, ErrClosed
	}
	n, err := cHealthImport(c.eng, data)
	runtime.KeepAlive(r)
	return n, err
}

// ReloadEndpoint names one endpoint in a ReloadReport.
type ReloadEndpoint struct {
	Model    string `json:"model"`
	Endpoint string `json:"endpoint"`
}

// ReloadReport is what Reload changed.
type ReloadReport struct {
	// Generation is the catalog generation now serving (0 was the first).
	Generation uint64 `json:"generation"`
	// Added endpoints start unmeasured.
	Added []ReloadEndpoint `json:"added"`
	// Removed endpoints get no new request; their in-flight ones finish.
	Removed []ReloadEndpoint `json:"removed"`
	// Kept endpoints keep their health, percentiles, circuit and sticky
	// keys (with the new prices and settings).
	Kept []ReloadEndpoint `json:"kept"`
	// DrainingRequests were running on older catalogs at the swap.
	DrainingRequests int `json:"draining_requests"`
	// RestartRequired lists changed settings only a restart applies.
	RestartRequired []string `json:"restart_required"`
	// Warnings are the new catalog's warnings, as JSON objects.
	Warnings []json.RawMessage `json:"warnings"`
}

// Reload swaps in a new catalog live (llmux_engine_reload): endpoints in
// both catalogs keep their health and sticky keys, requests in flight
// finish on the catalog they started with, new ones use the new catalog.
// An invalid config changes nothing; the error (errors.Is
// ErrInvalidConfig) names every problem by its JSON path.
func (r *Router) Reload(configJSON []byte) (*ReloadReport, error) {
	c := r.core
	c.cmu.RLock()
	defer c.cmu.RUnlock()
	if c.eng == nil {
		return nil, ErrClosed
	}
	out, err := cEngineReload(c.eng, configJSON)
	runtime.KeepAlive(r)
	if err != nil {
		return nil, err
	}
	var rep ReloadReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// submit starts a request and registers it for its events. Until the
// request ends, ctx being done cancels it in llmux.
func (c *core) submit(ctx context.Context, protocol uint32, body []byte) (*call, error) {
	c.cmu.RLock()
	defer c.cmu.RUnlock()
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing || c.eng == nil {
		return nil, ErrClosed
	}
	var id uint64
	var err error
	if tp, ok := ctx.Value(traceparentKey{}).(string); ok {
		if strings.IndexByte(tp, 0) >= 0 {
			return nil, newError(ResultInvalidArgument, "traceparent holds a NUL byte")
		}
		id, err = cSubmitTraced(c.eng, protocol, body, tp)
	} else {
		id, err = cSubmit(c.eng, protocol, body)
	}
	if err != nil {
		return nil, err
	}
	c.submitted.Add(1)
	cl := newCall(id)
	cl.stopWatch = context.AfterFunc(ctx, func() { c.cancel(id) })
	if c.register(cl) {
		// Close began after our check and may have missed this request in
		// its cancel sweep; cmu is still held, so the engine is alive.
		cCancel(c.eng, id)
	}
	return cl, nil
}

// register makes cl receive its events, first those that arrived before
// it registered. It reports whether the Router is closing (cl is then
// marked as ended by Close and the caller must cancel it).
func (c *core) register(cl *call) (closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.early[cl.id] {
		cl.push(ev)
	}
	delete(c.early, cl.id)
	if cl.ended {
		return false
	}
	c.pending[cl.id] = cl
	if c.closing {
		cl.byClose.Store(true)
	}
	return c.closing
}

// route hands polled events to their requests; events of a request that
// has not registered yet wait in early.
func (c *core) route(evs []rawEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		if ev.kind != kindChunk && ev.kind != kindDone && ev.kind != kindError {
			continue // a kind this binding does not know: ignore it
		}
		if ev.kind != kindChunk {
			c.terminals.Add(1)
		}
		cl := c.pending[ev.id]
		if cl == nil {
			c.early[ev.id] = append(c.early[ev.id], ev)
			continue
		}
		cl.push(ev)
		if cl.ended {
			delete(c.pending, ev.id)
		}
	}
	if c.closing && len(c.pending) == 0 && c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
}

// cancel asks llmux to cancel a request; harmless when it already ended.
func (c *core) cancel(id uint64) {
	c.cmu.RLock()
	defer c.cmu.RUnlock()
	if c.eng != nil {
		cCancel(c.eng, id)
	}
}

func (c *core) shutdown() {
	c.mu.Lock()
	c.closing = true
	ids := make([]uint64, 0, len(c.pending))
	for id, cl := range c.pending {
		cl.byClose.Store(true)
		ids = append(ids, id)
	}
	var drained chan struct{}
	if len(c.pending) > 0 {
		drained = make(chan struct{})
		c.drained = drained
	}
	c.mu.Unlock()

	for _, id := range ids {
		c.cancel(id)
	}
	if drained != nil {
		c.waitDrained(drained, closeDrainTimeout)
	}

	// Stop polling: a poll in progress returns (the wakeup also releases
	// the next poll if none runs), and the token is never put back.
	c.stop.Store(true)
	c.cmu.RLock()
	cWakeup(c.eng)
	c.cmu.RUnlock()

	// The write lock waits for every C call to return: a poll in progress
	// and the routing of what it got, and submits, which register first.
	c.cmu.Lock()
	// Requests whose terminal never came (drain timed out) end with ErrClosed.
	c.mu.Lock()
	for id, cl := range c.pending {
		cl.fail(ErrClosed)
		delete(c.pending, id)
	}
	clear(c.early)
	c.mu.Unlock()
	cEngineFree(c.eng)
	c.eng = nil
	c.buf.free()
	c.cmu.Unlock()
	close(c.freed)
}

// call is one request's inbox: whoever polls appends, the caller takes.
// The queue is unbounded so a slow reader never stalls the poller.
type call struct {
	id uint64

	mu        sync.Mutex
	queue     []rawEvent
	ended     bool  // the terminal event has been queued (guarded by core.mu as well)
	failure   error // set instead of a terminal event when Close gave up
	abandoned bool  // nobody will read: drop what arrives

	signal    chan struct{} // capacity 1: "the queue changed"
	byClose   atomic.Bool   // Router.Close cancelled this request
	stopWatch func() bool   // unregisters the ctx watcher; set before registration
}

func newCall(id uint64) *call {
	return &call{id: id, signal: make(chan struct{}, 1)}
}

func (cl *call) notify() {
	select {
	case cl.signal <- struct{}{}:
	default:
	}
}

// push queues an event; called with core.mu held.
func (cl *call) push(ev rawEvent) {
	terminal := ev.kind != kindChunk
	cl.mu.Lock()
	if terminal {
		cl.ended = true
	}
	if !cl.abandoned {
		cl.queue = append(cl.queue, ev)
	}
	cl.mu.Unlock()
	if terminal && cl.stopWatch != nil {
		cl.stopWatch()
	}
	cl.notify()
}

// fail ends a request without a terminal event; called with core.mu held.
func (cl *call) fail(err error) {
	cl.mu.Lock()
	cl.ended = true
	cl.failure = err
	cl.mu.Unlock()
	if cl.stopWatch != nil {
		cl.stopWatch()
	}
	cl.notify()
}

func (cl *call) abandon() {
	cl.mu.Lock()
	cl.abandoned = true
	cl.queue = nil
	cl.mu.Unlock()
}

// hasNews reports whether take would return something.
func (cl *call) hasNews() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.queue) > 0 || cl.failure != nil
}

// take returns the next queued event, or the failure when Close gave up on
// the request; ok is false when there is nothing yet.
func (cl *call) take() (ev rawEvent, failure error, ok bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.queue) > 0 {
		ev = cl.queue[0]
		cl.queue[0] = rawEvent{}
		cl.queue = cl.queue[1:]
		return ev, nil, true
	}
	if cl.failure != nil {
		return rawEvent{}, cl.failure, true
	}
	return rawEvent{}, nil, false
}

type traceparentKey struct{}

// WithTraceparent returns a context that makes the requests started with
// it children of the W3C trace context tp (a "traceparent" header value,
// 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>): with
// telemetry.otlp in the config, each request span ("chat {model}") is
// exported in that trace under that span, and the flags' sampled bit
// decides whether it is exported. An empty tp means no parent. A malformed
// tp makes the request fail at once with an *Error whose Code is
// ResultInvalidArgument (nothing is started).
func WithTraceparent(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceparentKey{}, tp)
}
