package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Message is one chat message of a request. An assistant message may
// carry the tool calls the model made, and a "tool" message the result of
// one (ToolCallID names the call).
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Name       string     `json:"name,omitempty"`
}

// MarshalJSON encodes the message; the content of an assistant message
// that only calls tools is null, as OpenAI sends it.
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	var content *string
	if m.Content != "" || len(m.ToolCalls) == 0 {
		content = &m.Content
	}
	return json.Marshal(struct {
		Role    string  `json:"role"`
		Content *string `json:"content"`
		plain
	}{m.Role, content, plain(m)})
}

// ToolCall is a call of a function tool the model made. Index is set in
// streamed deltas only, where it says which call a delta continues.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function a tool call calls, with its arguments as
// the model wrote them (JSON, not checked).
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool is a function tool the model may call, in the chat completions
// format.
type Tool struct {
	Type     string      `json:"type"`
	Function FunctionDef `json:"function"`
}

// FunctionDef describes a function tool.
type FunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// StreamOptions are the options of a streamed request.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ChatRequest is a /chat/completions request. Optional fields are pointers
// or omitted when empty, so the caller controls exactly which fields are
// sent: servers' defaults differ.
type ChatRequest struct {
	Model               string         `json:"model"`
	Messages            []Message      `json:"messages"`
	Temperature         *float64       `json:"temperature,omitempty"`
	TopP                *float64       `json:"top_p,omitempty"`
	MaxTokens           *int           `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int           `json:"max_completion_tokens,omitempty"`
	N                   *int           `json:"n,omitempty"`
	Seed                *int64         `json:"seed,omitempty"`
	Stop                []string       `json:"stop,omitempty"`
	PresencePenalty     *float64       `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64       `json:"frequency_penalty,omitempty"`
	Logprobs            *bool          `json:"logprobs,omitempty"`
	TopLogprobs         *int           `json:"top_logprobs,omitempty"`
	Stream              bool           `json:"stream,omitempty"`
	StreamOptions       *StreamOptions `json:"stream_options,omitempty"`
	User                string         `json:"user,omitempty"`
	// Tools and ToolChoice are sent as they are (JSON), ParallelToolCalls
	// when set.
	Tools             json.RawMessage `json:"tools,omitempty"`
	ToolChoice        json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	// Extra holds server-specific fields (top_k, min_p,
	// repetition_penalty, chat_template_kwargs, ...) added to the body. A
	// key that names a field set above is ignored.
	Extra map[string]any `json:"-"`
}

// MarshalJSON encodes the request with its Extra fields.
func (r ChatRequest) MarshalJSON() ([]byte, error) {
	type plain ChatRequest
	data, err := json.Marshal(plain(r))
	if err != nil || len(r.Extra) == 0 {
		return data, err
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(data, &present); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		if _, ok := present[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.Write(data[:len(data)-1]) // without the closing brace
	for _, k := range keys {
		v, err := json.Marshal(r.Extra[k])
		if err != nil {
			return nil, fmt.Errorf("extra field %q: %w", k, err)
		}
		kb, _ := json.Marshal(k)
		buf.WriteByte(',')
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// Usage is the token accounting of a response.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// TopLogprob is one of the most likely tokens at a position.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes,omitempty"`
}

// TokenLogprob is one generated token with its log probability and, when
// top_logprobs was asked for, the most likely alternatives.
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes,omitempty"`
	TopLogprobs []TopLogprob `json:"top_logprobs,omitempty"`
}

// Logprobs holds a choice's token log probabilities.
type Logprobs struct {
	Content []TokenLogprob `json:"content"`
}

// ResponseMessage is the message of a response choice. Content is "" when
// the server sent null.
type ResponseMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// ReasoningContent is the thinking of reasoning models, which vLLM and
	// SGLang return apart from the answer.
	ReasoningContent string `json:"reasoning_content,omitempty"`
	Refusal          string `json:"refusal,omitempty"`
	// ToolCalls are the tools the model called, in its order.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// MarshalJSON encodes the message as OpenAI does: refusal is null when
// empty, and so is the content of a message that only calls tools.
func (m ResponseMessage) MarshalJSON() ([]byte, error) {
	var content, refusal *string
	if m.Content != "" || len(m.ToolCalls) == 0 {
		content = &m.Content
	}
	if m.Refusal != "" {
		refusal = &m.Refusal
	}
	return json.Marshal(struct {
		Role             string     `json:"role"`
		Content          *string    `json:"content"`
		ReasoningContent string     `json:"reasoning_content,omitempty"`
		Refusal          *string    `json:"refusal"`
		ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	}{m.Role, content, m.ReasoningContent, refusal, m.ToolCalls})
}

// UnmarshalJSON accepts content as a string, null or a list of text parts.
func (m *ResponseMessage) UnmarshalJSON(data []byte) error {
	var w struct {
		Role             string          `json:"role"`
		Content          json.RawMessage `json:"content"`
		ReasoningContent json.RawMessage `json:"reasoning_content"`
		Reasoning        json.RawMessage `json:"reasoning"`
		Refusal          json.RawMessage `json:"refusal"`
		ToolCalls        []ToolCall      `json:"tool_calls"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	var err error
	*m = ResponseMessage{Role: w.Role, ToolCalls: w.ToolCalls}
	if m.Content, err = decodeContent(w.Content); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	if m.ReasoningContent, err = decodeContent(w.ReasoningContent); err != nil {
		return fmt.Errorf("reasoning_content: %w", err)
	}
	if m.ReasoningContent == "" {
		if m.ReasoningContent, err = decodeContent(w.Reasoning); err != nil {
			return fmt.Errorf("reasoning: %w", err)
		}
	}
	if m.Refusal, err = decodeContent(w.Refusal); err != nil {
		return fmt.Errorf("refusal: %w", err)
	}
	return nil
}

// decodeContent reads a string, null, or a list of {"type":"text","text"}
// parts (joined).
func decodeContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("want a string, null or a list of text parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" || p.Type == "" || p.Type == "output_text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}

// Choice is one choice of a response. Logprobs is null when not asked
// for, as OpenAI sends it.
type Choice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	Logprobs     *Logprobs       `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

// ChatResponse is a non-streamed /chat/completions response.
type ChatResponse struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	Choices           []Choice `json:"choices"`
	Usage             *Usage   `json:"usage,omitempty"`
	SystemFingerprint string   `json:"system_fingerprint,omitempty"`
}

// Texts returns the content of the choices ordered by index (see Ordered).
func (r ChatResponse) Texts() []string {
	cs := r.Ordered()
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Message.Content
	}
	return out
}

// Ordered returns the choices ordered by index. Choices with a repeated or
// out-of-range index fill the gaps left by the others, in list order.
func (r ChatResponse) Ordered() []Choice {
	out := make([]Choice, len(r.Choices))
	placed := make([]bool, len(r.Choices))
	var rest []Choice
	for _, c := range r.Choices {
		if c.Index >= 0 && c.Index < len(out) && !placed[c.Index] {
			out[c.Index] = c
			placed[c.Index] = true
			continue
		}
		rest = append(rest, c)
	}
	for i := range out {
		if !placed[i] && len(rest) > 0 {
			out[i], rest = rest[0], rest[1:]
		}
	}
	return out
}

// Delta is the new part of a choice in a streamed chunk.
type Delta struct {
	Role             string     `json:"role,omitempty"`
	Content          string     `json:"content,omitempty"`
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// MarshalJSON encodes the delta as OpenAI does: the first delta of a
// choice, which carries the role, has content "" when it has no other.
func (d Delta) MarshalJSON() ([]byte, error) {
	var content *string
	if d.Content != "" || d.Role != "" && len(d.ToolCalls) == 0 {
		content = &d.Content
	}
	return json.Marshal(struct {
		Role             string     `json:"role,omitempty"`
		Content          *string    `json:"content,omitempty"`
		ReasoningContent string     `json:"reasoning_content,omitempty"`
		ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	}{d.Role, content, d.ReasoningContent, d.ToolCalls})
}

// UnmarshalJSON accepts null content and reasoning under either name.
func (d *Delta) UnmarshalJSON(data []byte) error {
	var m ResponseMessage
	if err := m.UnmarshalJSON(data); err != nil {
		return err
	}
	*d = Delta{Role: m.Role, Content: m.Content, ReasoningContent: m.ReasoningContent, ToolCalls: m.ToolCalls}
	return nil
}

// ChunkChoice is one choice of a streamed chunk.
type ChunkChoice struct {
	Index        int       `json:"index"`
	Delta        Delta     `json:"delta"`
	FinishReason string    `json:"finish_reason,omitempty"`
	Logprobs     *Logprobs `json:"logprobs,omitempty"`
}

// MarshalJSON encodes the choice as OpenAI does: logprobs and
// finish_reason are null until set.
func (c ChunkChoice) MarshalJSON() ([]byte, error) {
	var finish *string
	if c.FinishReason != "" {
		finish = &c.FinishReason
	}
	return json.Marshal(struct {
		Index        int       `json:"index"`
		Delta        Delta     `json:"delta"`
		Logprobs     *Logprobs `json:"logprobs"`
		FinishReason *string   `json:"finish_reason"`
	}{c.Index, c.Delta, c.Logprobs, finish})
}

// ChatChunk is one event of a streamed response. With
// stream_options.include_usage the last chunk has no choices and a usage.
type ChatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	Usage   *Usage        `json:"usage,omitempty"`
}

// Model is one entry of /models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// MaxModelLen is the context window, as vLLM reports it.
	MaxModelLen int `json:"max_model_len,omitempty"`
}

// ModelList is the /models response.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}
