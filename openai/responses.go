package openai

import (
	"encoding/json"
)

// The wire types of the Responses API (POST /v1/responses), as tpo serve
// answers it. Fields clients read are always sent, null when unset, as
// OpenAI sends them.

// Response is a response object.
type Response struct {
	ID        string `json:"id"`
	Object    string `json:"object"` // "response"
	CreatedAt int64  `json:"created_at"`
	// Status is queued, in_progress, completed, failed, cancelled or
	// incomplete.
	Status             string             `json:"status"`
	Background         bool               `json:"background"`
	Error              *ResponseError     `json:"error"`
	IncompleteDetails  *IncompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Metadata           map[string]string  `json:"metadata"`
	Model              string             `json:"model"`
	Output             []OutputItem       `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	Text               ResponseText       `json:"text"`
	// ToolChoice and Tools are in the Responses API's format (JSON).
	ToolChoice  json.RawMessage `json:"tool_choice"`
	Tools       json.RawMessage `json:"tools"`
	TopP        *float64        `json:"top_p"`
	Truncation  string          `json:"truncation"`
	Usage       *ResponseUsage  `json:"usage"`
	CompletedAt *int64          `json:"completed_at,omitempty"`
	// TPO is tpo serve's extension object (what the optimization did).
	TPO any `json:"tpo,omitempty"`
}

// ResponseError is why a response failed.
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response is incomplete.
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// ResponseText is the text settings of a response.
type ResponseText struct {
	Format TextFormat `json:"format"`
}

// TextFormat is a response's text format; tpo serve writes "text".
type TextFormat struct {
	Type string `json:"type"`
}

// ResponseUsage is the token accounting of a response.
type ResponseUsage struct {
	InputTokens         int                 `json:"input_tokens"`
	InputTokensDetails  InputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                 `json:"output_tokens"`
	OutputTokensDetails OutputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int                 `json:"total_tokens"`
}

// InputTokensDetails breaks input tokens down.
type InputTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// OutputTokensDetails breaks output tokens down.
type OutputTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// OutputItem is an item of a response's output: an assistant message
// (Type "message": Role, Content) or a function call (Type
// "function_call": CallID, Name, Arguments).
type OutputItem struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Status string `json:"status"` // in_progress, completed, incomplete
	// A message's.
	Role    string          `json:"role,omitempty"`
	Content []OutputContent `json:"content,omitempty"`
	// A function call's.
	CallID    string `json:"call_id,omitempty"`
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// MarshalJSON sends the fields of the item's type, all of them: a
// message's content even when empty, a function call's arguments even
// when "".
func (it OutputItem) MarshalJSON() ([]byte, error) {
	if it.Type == "function_call" {
		return json.Marshal(struct {
			Type      string `json:"type"`
			ID        string `json:"id"`
			Status    string `json:"status"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		}{it.Type, it.ID, it.Status, it.CallID, it.Name, it.Arguments})
	}
	content := it.Content
	if content == nil {
		content = []OutputContent{}
	}
	return json.Marshal(struct {
		Type    string          `json:"type"`
		ID      string          `json:"id"`
		Status  string          `json:"status"`
		Role    string          `json:"role"`
		Content []OutputContent `json:"content"`
	}{it.Type, it.ID, it.Status, it.Role, content})
}

// OutputContent is a part of an output message: output_text.
type OutputContent struct {
	Type        string            `json:"type"` // "output_text"
	Text        string            `json:"text"`
	Annotations []json.RawMessage `json:"annotations"`
	Logprobs    []json.RawMessage `json:"logprobs"`
}

// OutputText returns a complete output_text part.
func OutputText(text string) OutputContent {
	return OutputContent{Type: "output_text", Text: text, Annotations: []json.RawMessage{}, Logprobs: []json.RawMessage{}}
}

// NoLogprobs is the logprobs of a text event: none.
var NoLogprobs = json.RawMessage(`[]`)

// ResponseEvent is one event of a streamed response. Type says which
// fields it has: the response (response.created, .in_progress,
// .completed, .failed), an output item (response.output_item.added,
// .done), a content part (response.content_part.added, .done), a text
// delta or the whole text (response.output_text.delta, .done), a function
// call's arguments (response.function_call_arguments.delta, .done).
type ResponseEvent struct {
	Type           string         `json:"type"`
	SequenceNumber int            `json:"sequence_number"`
	Response       *Response      `json:"response,omitempty"`
	OutputIndex    *int           `json:"output_index,omitempty"`
	ContentIndex   *int           `json:"content_index,omitempty"`
	ItemID         string         `json:"item_id,omitempty"`
	Item           *OutputItem    `json:"item,omitempty"`
	Part           *OutputContent `json:"part,omitempty"`
	Delta          *string        `json:"delta,omitempty"`
	Text           *string        `json:"text,omitempty"`
	Arguments      *string        `json:"arguments,omitempty"`
	// Logprobs is [] in text events (NoLogprobs).
	Logprobs json.RawMessage `json:"logprobs,omitempty"`
	// TPO is tpo serve's extension object: the progress of the
	// optimization, in keepalive events (which standard clients ignore).
	TPO any `json:"tpo,omitempty"`
}
