package llmux

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// splitDone agrees with encoding/json on every valid object and never
// panics on anything else. `go test` runs the seeds; `go test -fuzz
// FuzzSplitDone` explores further.
func FuzzSplitDone(f *testing.F) {
	for _, seed := range []string{
		`{"type":"done","response":{"id":"x","choices":[{"message":{"content":"a \"}\" b"}}]},"error_kind":null,"routing":{"model":"m","attempts":[]}}`,
		` { "routing" : { "a" : [ 1 , { "b" : "]}\\" } ] } , "response" : null } `,
		`{"response":"s\\\\","routing":12.5e3}`,
		`{"response":[],"routing":true,"response":{"again":1}}`,
		`{"Response":1,"routing":false}`, `{"respon\u0073e":1,"routing":2}`,
		`{}`, `{ }`, `[]`, `null`, `{"response":}`, `{"response":{"a":1}`, `{"a" 1}`, `{"a":1,}`,
		`{"response":"unterminated`, `{"routing":{"a":"\`, `{"a":1}x`, ``, `{`, `"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		response, routing, ok := splitDone(data)
		var members map[string]json.RawMessage
		if !json.Valid(data) || json.Unmarshal(data, &members) != nil || members == nil {
			return // not an object: whatever splitDone says, it did not panic
		}
		if !ok {
			if !bytes.Contains(data, []byte(`\`)) {
				t.Fatalf("%s: a valid object without escapes did not scan", data)
			}
			return // decodeDone falls back to encoding/json
		}
		if !bytes.Equal(response, members["response"]) || !bytes.Equal(routing, members["routing"]) {
			t.Fatalf("%s: got %q %q, want %q %q", data, response, routing, members["response"], members["routing"])
		}
	})
}

// The real DONE event of a request, through decodeDone and through
// encoding/json, gives the same response and routing record.
func TestDecodeDoneMatchesEncodingJSON(t *testing.T) {
	r := newTestRouter(t)
	body, err := encodeRequest(chat("test/model:a"), false)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := r.core.submit(context.Background(), protoOpenAI, body)
	if err != nil {
		t.Fatal(err)
	}
	if !r.core.await(cl, nil, nil) {
		t.Fatal("no news")
	}
	ev, _, _ := cl.take()
	got, err := decodeDone(ev.data)
	var want doneEvent
	if err != nil || json.Unmarshal(ev.data, &want) != nil || len(want.Response) == 0 || len(want.Routing) == 0 {
		t.Fatalf("%v: %s", err, ev.data)
	}
	if !bytes.Equal(got.Response, want.Response) || !bytes.Equal(got.Routing, want.Routing) {
		t.Errorf("got %s / %s, want %s / %s", got.Response, got.Routing, want.Response, want.Routing)
	}
}
