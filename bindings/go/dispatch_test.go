package llmux

import (
	"context"
	"testing"
)

func newTestCore() *core {
	return &core{pending: map[uint64]*call{}, early: map[uint64][]rawEvent{}}
}

// Events that arrive before their request registers wait and are handed
// over, in order, at registration.
func TestEventsBeforeRegistration(t *testing.T) {
	c := newTestCore()
	c.route([]rawEvent{
		{id: 7, kind: kindChunk, data: []byte(`{"n":1}`)},
		{id: 8, kind: kindChunk, data: []byte(`{"n":1}`)},
		{id: 7, kind: kindChunk, data: []byte(`{"n":2}`)},
		{id: 7, kind: 99, data: []byte(`{}`)}, // an unknown kind: ignored
	})
	cl := newCall(7)
	cl.stopWatch = context.AfterFunc(context.Background(), func() {})
	if c.register(cl) {
		t.Fatal("closing")
	}
	c.route([]rawEvent{{id: 7, kind: kindDone, data: []byte(`{"type":"done"}`)}})
	var got []string
	for {
		ev, failure, ok := cl.take()
		if !ok || failure != nil {
			break
		}
		got = append(got, string(ev.data))
	}
	want := []string{`{"n":1}`, `{"n":2}`, `{"type":"done"}`}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if len(c.pending) != 0 || len(c.early) != 1 || c.terminals.Load() != 1 {
		t.Errorf("pending %d early %d terminals %d", len(c.pending), len(c.early), c.terminals.Load())
	}

	// A request whose terminal arrived before it registered never enters pending.
	c.route([]rawEvent{{id: 8, kind: kindError, data: []byte(`{}`)}})
	cl8 := newCall(8)
	c.register(cl8)
	if !cl8.ended || len(c.pending) != 0 || len(c.early) != 0 {
		t.Errorf("ended %v pending %d early %d", cl8.ended, len(c.pending), len(c.early))
	}
}

// Requests registering while the Router closes are marked for cancellation.
func TestRegisterWhileClosing(t *testing.T) {
	c := newTestCore()
	c.closing = true
	cl := newCall(3)
	if !c.register(cl) || !cl.byClose.Load() {
		t.Fatal("not marked")
	}
}

func TestEncodeRequestKeepsHTML(t *testing.T) {
	b, err := encodeRequest(map[string]any{"model": "m", "messages": []any{"<b>&</b>"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"messages":["<b>&</b>"],"model":"m","stream":false}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
