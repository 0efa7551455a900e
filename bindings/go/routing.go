package llmux

import (
	"encoding/json"
	"strings"
)

// Routing is the record every terminal event carries: which endpoint served
// the request, every attempt in order, first-token latency, usage and cost.
// On a failed request Endpoint, Provider and UpstreamModel are empty.
type Routing struct {
	Model         string    `json:"model"`
	Endpoint      string    `json:"endpoint"`
	Provider      string    `json:"provider"`
	UpstreamModel string    `json:"upstream_model"`
	Attempts      []Attempt `json:"attempts"`
	FirstTokenMs  *float64  `json:"first_token_ms"`
	LatencyMs     float64   `json:"latency_ms"`
	Usage         *Usage    `json:"usage"`
	CostUSD       *float64  `json:"cost_usd"`

	// Raw is the record as llmux wrote it, including fields this version
	// of the binding does not know.
	Raw json.RawMessage `json:"-"`
}

// Attempt is one try of one endpoint.
type Attempt struct {
	Endpoint string `json:"endpoint"`
	Provider string `json:"provider"`
	// Outcome: success, connect_error, connection_closed, auth_rejected,
	// not_found, rate_limited, server_error, bad_request, http_error,
	// first_token_timeout, idle_timeout, total_timeout, malformed_response,
	// truncated_stream, provider_error, translation_error,
	// concurrency_limited, hedge_lost, cancelled (docs/errors.md).
	Outcome   string  `json:"outcome"`
	Status    *int    `json:"status"`
	ElapsedMs float64 `json:"elapsed_ms"`
	Error     *string `json:"error"`
}

// Usage is the token count the upstream reported.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	CachedTokens     int `json:"cached_tokens"`
}

func parseRouting(raw json.RawMessage) (*Routing, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var r Routing
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	r.Raw = append(json.RawMessage(nil), raw...)
	return &r, nil
}

// Response is a finished non-streaming request.
type Response struct {
	// ID is the llmux request id.
	ID uint64
	// Body is the full response in the caller's protocol: an OpenAI
	// chat.completion or an Anthropic message.
	Body json.RawMessage
	// Routing says who served it and how.
	Routing Routing
}

// Text returns the reply text of Body: choices[0].message.content for an
// OpenAI chat.completion, the concatenated text blocks of an Anthropic
// message. Empty when there is none.
func (r *Response) Text() string {
	var v struct {
		Choices []struct {
			Message struct {
				Content *string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		Output []struct {
			Type    string `json:"type"`
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
	}
	if json.Unmarshal(r.Body, &v) != nil {
		return ""
	}
	if len(v.Choices) > 0 && v.Choices[0].Message.Content != nil {
		return *v.Choices[0].Message.Content
	}
	var b strings.Builder
	for _, c := range v.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
		}
	}
	for _, item := range v.Output {
		for _, c := range item.Content {
			if item.Type == "message" && c.Type == "output_text" {
				b.WriteString(c.Text)
			}
		}
	}
	return b.String()
}

// ChunkText returns the text a stream chunk adds: choices[0].delta.content
// of an OpenAI chat.completion.chunk, delta.text of an Anthropic
// content_block_delta, delta of a Responses response.output_text.delta.
// Empty for any other chunk.
func ChunkText(chunk json.RawMessage) string {
	var v struct {
		Type    string `json:"type"`
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
		Delta json.RawMessage `json:"delta"`
	}
	if json.Unmarshal(chunk, &v) != nil {
		return ""
	}
	if len(v.Choices) > 0 {
		return v.Choices[0].Delta.Content
	}
	switch v.Type {
	case "content_block_delta":
		var d struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(v.Delta, &d) == nil && d.Type == "text_delta" {
			return d.Text
		}
	case "response.output_text.delta":
		var s string
		if json.Unmarshal(v.Delta, &s) == nil {
			return s
		}
	}
	return ""
}
