package llmux

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// doneEvent is the JSON of a DONE event.
type doneEvent struct {
	Response json.RawMessage `json:"response"`
	Routing  json.RawMessage `json:"routing"`
}

// decodeDone takes the response and the routing record out of a DONE
// event. llmux writes valid JSON, so a scan for the two top-level members
// does, instead of a full decode of the event (about half the binding's
// JSON work per request); anything not shaped as expected goes through
// encoding/json. The returned slices alias data.
func decodeDone(data []byte) (doneEvent, error) {
	if response, routing, ok := splitDone(data); ok {
		return doneEvent{Response: response, Routing: routing}, nil
	}
	var ev doneEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("llmux: unreadable done event: %w", err)
	}
	return ev, nil
}

// splitDone returns the raw values of the top-level members "response" and
// "routing" of the JSON object data (nil when absent); ok is false when data
// does not scan as an object or has a key with an escape in it.
func splitDone(data []byte) (response, routing []byte, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil, nil, true
	}
	for i < len(data) {
		if data[i] != '"' {
			return nil, nil, false
		}
		end, ok := skipString(data, i)
		if !ok {
			return nil, nil, false
		}
		key := data[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return nil, nil, false // an escaped key: leave it to encoding/json
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, nil, false
		}
		i = skipSpace(data, i+1)
		end, ok = skipValue(data, i)
		if !ok {
			return nil, nil, false
		}
		switch string(key) {
		case "response":
			response = data[i:end]
		case "routing":
			routing = data[i:end]
		}
		i = skipSpace(data, end)
		if i >= len(data) {
			return nil, nil, false
		}
		switch data[i] {
		case '}':
			return response, routing, true
		case ',':
			i = skipSpace(data, i+1)
		default:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at data[i].
func skipString(data []byte, i int) (int, bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++ // the escaped byte
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index just past the value starting at data[i]: an
// object or array (brackets counted outside strings), a string, or a
// literal or number (up to the next delimiter).
func skipValue(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, ok := skipString(data, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' &&
		data[j] != ' ' && data[j] != '\t' && data[j] != '\n' && data[j] != '\r' {
		j++
	}
	return j, j > i
}
