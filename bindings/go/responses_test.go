package llmux

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// OpenAI Responses (protocol 2): passed through to a Responses upstream,
// translated to Chat Completions and Anthropic upstreams.

func responsesReq(model string) map[string]any {
	return map[string]any{"model": model, "input": "hi", "instructions": "be brief"}
}

var responsesTargets = []struct{ model, endpoint, text string }{
	{"test/responses", "resp/default", "Hello from d."},
	{"test/claude", "anth/default", "Hello from d."},
	{"test/model:a", "a/default", "Hello from a."},
}

func TestResponses(t *testing.T) {
	r := newTestRouter(t)
	for _, tc := range responsesTargets {
		t.Run(tc.model, func(t *testing.T) {
			resp, err := r.Responses(context.Background(), responsesReq(tc.model))
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Object string `json:"object"`
				Status string `json:"status"`
				Usage  struct {
					OutputTokensDetails struct {
						ReasoningTokens *int `json:"reasoning_tokens"`
					} `json:"output_tokens_details"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(resp.Body, &body); err != nil || body.Object != "response" ||
				body.Status != "completed" || body.Usage.OutputTokensDetails.ReasoningTokens == nil {
				t.Errorf("body %s", resp.Body)
			}
			if resp.Text() != tc.text || resp.Routing.Endpoint != tc.endpoint {
				t.Errorf("text %q routing %s", resp.Text(), resp.Routing.Raw)
			}
		})
	}
}

func TestResponsesStream(t *testing.T) {
	r := newTestRouter(t)
	for _, tc := range responsesTargets {
		t.Run(tc.model, func(t *testing.T) {
			s, err := r.ResponsesStream(context.Background(), responsesReq(tc.model))
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			var text strings.Builder
			next := -1
			for chunk, err := range s.Chunks() {
				if err != nil {
					t.Fatal(err)
				}
				var ev struct {
					Type string `json:"type"`
					Seq  int    `json:"sequence_number"`
				}
				if err := json.Unmarshal(chunk, &ev); err != nil || ev.Type == "" || (next >= 0 && ev.Seq != next) {
					t.Errorf("chunk %s", chunk)
				}
				next = ev.Seq + 1
				types = append(types, ev.Type)
				text.WriteString(ChunkText(chunk))
			}
			if len(types) < 3 || types[0] != "response.created" || types[len(types)-1] != "response.completed" {
				t.Errorf("event types %v", types)
			}
			if text.String() != tc.text || s.Routing() == nil || s.Routing().Endpoint != tc.endpoint {
				t.Errorf("text %q routing %v", text.String(), s.Routing())
			}
		})
	}
}

func TestResponsesRefusesStoreWithoutAResponsesEndpoint(t *testing.T) {
	r := newTestRouter(t)
	req := responsesReq("test/claude")
	req["store"] = true
	_, err := r.Responses(context.Background(), req)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "store") {
		t.Fatalf("err %v", err)
	}
}
