package server

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// responsesRequest is what the server reads of a Responses API request.
type responsesRequest struct {
	Model              string            `json:"model"`
	Input              json.RawMessage   `json:"input"`
	Instructions       *string           `json:"instructions"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	Temperature        *float64          `json:"temperature"`
	TopP               *float64          `json:"top_p"`
	Metadata           map[string]string `json:"metadata"`
	Stream             bool              `json:"stream"`
	Background         bool              `json:"background"`
	Store              *bool             `json:"store"`
	PreviousResponseID string            `json:"previous_response_id"`
	Tools              json.RawMessage   `json:"tools"`
	ToolChoice         json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls  *bool             `json:"parallel_tool_calls"`
	Text               *struct {
		Format *struct {
			Type string `json:"type"`
		} `json:"format"`
	} `json:"text"`
	// Features tpo serve does not offer; their presence is checked.
	Conversation json.RawMessage `json:"conversation"`
	Prompt       json.RawMessage `json:"prompt"`
	TopLogprobs  *int            `json:"top_logprobs"`
}

// respPlan is a validated Responses API request.
type respPlan struct {
	*plan
	Background bool
	Store      bool
	// Previous is the response this one continues, "" for none.
	Previous        string
	Instructions    *string
	Metadata        map[string]string
	MaxOutputTokens *int
	// EchoTools and EchoChoice are the tools and the tool choice as the
	// request sent them, for the answer.
	EchoTools         json.RawMessage
	EchoChoice        json.RawMessage
	ParallelToolCalls bool
	// Input is the request's input as chat messages; History the
	// conversation the response answers, without its instructions (the
	// stored context of the response it continues, then Input).
	Input   []openai.Message
	History []openai.Message

	ov   Overrides
	samp samplingReq
}

// parseResponsesRequest reads a Responses API request and checks it. The
// conversation is completed by finish, once the response it continues
// (Previous) is known.
func parseResponsesRequest(body []byte, st settings) (*respPlan, *apiError) {
	st.Limits = st.Limits.withDefaults()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, badRequest("", "the request body is not a JSON object: %s", jsonErrText(err))
	}
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, jsonFieldError("", err)
	}
	ov, aerr := decodeOverrides(top["tpo"])
	if aerr != nil {
		return nil, aerr
	}
	rp := &respPlan{plan: &plan{Model: req.Model, Stream: req.Stream, N: 1}, Background: req.Background, Store: true,
		Previous: req.PreviousResponseID, Instructions: req.Instructions, Metadata: req.Metadata,
		MaxOutputTokens: req.MaxOutputTokens, ParallelToolCalls: true,
		samp: samplingReq{Temperature: req.Temperature, TopP: req.TopP, MaxTokens: req.MaxOutputTokens}}
	if req.Store != nil {
		rp.Store = *req.Store
	}
	if req.ParallelToolCalls != nil {
		rp.ParallelToolCalls = *req.ParallelToolCalls
	}
	if rp.Upstream, rp.ov, aerr = resolveModel(req.Model, ov, st.Limits); aerr != nil {
		return nil, aerr
	}
	if aerr := checkResponsesRequest(&req, rp, st.Limits); aerr != nil {
		return nil, aerr
	}
	if rp.Input, aerr = convertInput(req.Input); aerr != nil {
		return nil, aerr
	}
	if rp.Tools, rp.EchoTools, rp.EchoChoice, aerr = convertResponseTools(req.Tools, req.ToolChoice); aerr != nil {
		return nil, aerr
	}
	rp.Tools.ParallelToolCalls = req.ParallelToolCalls
	return rp, nil
}

// checkResponsesRequest refuses what tpo serve cannot do with a
// response, and what is out of bounds.
func checkResponsesRequest(req *responsesRequest, rp *respPlan, lim Limits) *apiError {
	switch {
	case rp.Background && !rp.Store:
		return badRequest("store", "a background response must be stored: store false cannot be used with background true")
	case rp.Background && rp.Stream:
		return badRequest("stream", "a background response cannot be streamed by tpo serve; poll GET /v1/responses/{id} instead")
	case !isNull(req.Conversation):
		return badRequest("conversation", "conversations are not supported by tpo serve; use previous_response_id")
	case !isNull(req.Prompt):
		return badRequest("prompt", "prompt templates are not supported by tpo serve")
	case req.TopLogprobs != nil:
		return badRequest("top_logprobs", "logprobs are not supported with TPO (the answer is not one sample)")
	case req.MaxOutputTokens != nil && (*req.MaxOutputTokens < 1 || *req.MaxOutputTokens > lim.MaxTokens):
		return badRequest("max_output_tokens", "max_output_tokens must be between 1 and %d, got %d", lim.MaxTokens, *req.MaxOutputTokens)
	}
	if req.Text != nil && req.Text.Format != nil && req.Text.Format.Type != "text" {
		return badRequest("text.format", "text.format %q is not supported with TPO (only text)", req.Text.Format.Type)
	}
	return checkMetadata(req.Metadata)
}

// checkMetadata checks metadata against OpenAI's bounds: 16 pairs, keys of
// 64 characters, values of 512.
func checkMetadata(m map[string]string) *apiError {
	if len(m) > 16 {
		return badRequest("metadata", "metadata has %d pairs; at most 16 are allowed", len(m))
	}
	for k, v := range m {
		if utf8.RuneCountInString(k) > 64 || utf8.RuneCountInString(v) > 512 {
			return badRequest("metadata", "metadata key %.64q: keys may have 64 characters, values 512", k)
		}
	}
	return nil
}

// finish completes the plan's conversation: the instructions (as a system
// turn), then prev (the conversation of the response it continues), then
// the input; and its settings.
func (rp *respPlan) finish(st settings, prev []openai.Message) *apiError {
	var conv []openai.Message
	if rp.Instructions != nil && *rp.Instructions != "" {
		conv = append(conv, openai.Message{Role: tpo.RoleSystem, Content: *rp.Instructions})
	}
	rp.History = append(append([]openai.Message(nil), prev...), rp.Input...)
	rp.Conversation = append(conv, rp.History...)
	if rp.ov.Mode == ModeOff {
		return rp.finishOff(st)
	}
	return completePlan(rp.plan, st, rp.ov, rp.samp, "input")
}

// finishOff completes a response asked for unoptimized: one sample of the
// policy, with the request's sampling.
func (rp *respPlan) finishOff(st settings) *apiError {
	rp.Off = true
	rp.Item = tpo.Item{Messages: renderConversation(rp.Conversation)}
	if err := rp.Item.Validate(); err != nil {
		return badRequest("input", "%v", err)
	}
	cfg := st.Config
	if aerr := applySampling(&cfg, rp.samp); aerr != nil {
		return aerr
	}
	rp.Config = cfg
	return nil
}

// inputItem is an item of a Responses API input: a message, a function
// call, or a function call's output.
type inputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

// convertInput reads a request's input, a string or a list of items, as
// chat messages: function calls join the assistant turn before them (or
// make one), function call outputs are tool messages.
func convertInput(raw json.RawMessage) ([]openai.Message, *apiError) {
	if isNull(raw) {
		return nil, badRequest("input", "input is required: a string or an array of input items")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return []openai.Message{{Role: tpo.RoleUser, Content: text}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest("input", "input must be a string or an array of input items")
	}
	if len(items) == 0 {
		return nil, badRequest("input", "input must not be empty")
	}
	var out []openai.Message
	for i, r := range items {
		param := fmt.Sprintf("input[%d]", i)
		var it inputItem
		if err := json.Unmarshal(r, &it); err != nil {
			return nil, badRequest(param, "%s must be an input item (an object): %s", param, jsonErrText(err))
		}
		var aerr *apiError
		if out, aerr = appendItem(out, it, param); aerr != nil {
			return nil, aerr
		}
	}
	return out, nil
}

// appendItem adds an input item to the conversation so far.
func appendItem(out []openai.Message, it inputItem, param string) ([]openai.Message, *apiError) {
	switch it.Type {
	case "", "message":
		return appendMessageItem(out, it, param)
	case "function_call":
		if it.CallID == "" || it.Name == "" {
			return nil, badRequest(param, "%s is a function call without call_id or name", param)
		}
		call := openai.ToolCall{ID: it.CallID, Type: "function", Function: openai.FunctionCall{Name: it.Name, Arguments: it.Arguments}}
		if n := len(out); n > 0 && out[n-1].Role == tpo.RoleAssistant {
			out[n-1].ToolCalls = append(out[n-1].ToolCalls, call)
			return out, nil
		}
		return append(out, openai.Message{Role: tpo.RoleAssistant, ToolCalls: []openai.ToolCall{call}}), nil
	case "function_call_output":
		if it.CallID == "" {
			return nil, badRequest(param+".call_id", "%s is a function call output without call_id", param)
		}
		text, aerr := contentText(param+".output", it.Output)
		if aerr != nil {
			return nil, aerr
		}
		return append(out, openai.Message{Role: roleTool, ToolCallID: it.CallID, Content: text}), nil
	case "reasoning":
		return out, nil // a reasoning model's own notes: not part of the conversation
	case "item_reference":
		return nil, badRequest(param+".type", "%s is an item reference: not supported by tpo serve; send the items, or use previous_response_id", param)
	}
	return nil, badRequest(param+".type", "%s has type %q: tpo serve takes messages, function calls and function call outputs", param, it.Type)
}

// appendMessageItem adds a message item.
func appendMessageItem(out []openai.Message, it inputItem, param string) ([]openai.Message, *apiError) {
	role := it.Role
	switch role {
	case tpo.RoleUser, tpo.RoleAssistant, tpo.RoleSystem:
	case "developer":
		role = tpo.RoleSystem
	case "":
		return nil, badRequest(param+".role", "%s has no role", param)
	default:
		return nil, badRequest(param+".role", "%s has unknown role %q", param, it.Role)
	}
	text, aerr := contentText(param+".content", it.Content)
	if aerr != nil {
		return nil, aerr
	}
	return append(out, openai.Message{Role: role, Content: text}), nil
}

// convertResponseTools reads the tools of a Responses API request (function
// tools: type, name, description, parameters, strict) and its tool
// choice, and returns them in the chat completions format for the policy
// server, and as they were for the answer (an empty list and "auto" when
// absent).
func convertResponseTools(tools, choice json.RawMessage) (toolSpec, json.RawMessage, json.RawMessage, *apiError) {
	echoTools, echoChoice := json.RawMessage(`[]`), json.RawMessage(`"auto"`)
	if !isNull(choice) {
		echoChoice = choice
	}
	chatChoice, aerr := convertToolChoice(choice)
	if aerr != nil {
		return toolSpec{}, nil, nil, aerr
	}
	if isNull(tools) {
		return toolSpec{}, echoTools, echoChoice, nil
	}
	var in []struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	}
	if err := json.Unmarshal(tools, &in); err != nil {
		return toolSpec{}, nil, nil, badRequest("tools", "tools must be an array of tools: %s", jsonErrText(err))
	}
	chat := make([]openai.Tool, 0, len(in))
	for i, t := range in {
		param := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return toolSpec{}, nil, nil, badRequest(param+".type", "%s has type %q: tpo serve offers function tools only", param, t.Type)
		}
		if t.Name == "" {
			return toolSpec{}, nil, nil, badRequest(param+".name", "%s has no name", param)
		}
		params := t.Parameters
		if isNull(params) {
			params = nil
		}
		chat = append(chat, openai.Tool{Type: "function", Function: openai.FunctionDef{Name: t.Name, Description: t.Description, Parameters: params, Strict: t.Strict}})
	}
	spec := toolSpec{}
	if len(chat) > 0 {
		spec.Tools, _ = json.Marshal(chat)
		spec.Choice = chatChoice
		echoTools = tools
	}
	return spec, echoTools, echoChoice, nil
}

// convertToolChoice turns a Responses API tool choice into the chat
// completions format: none, auto, required, or {"type": "function",
// "name": ...}.
func convertToolChoice(raw json.RawMessage) (json.RawMessage, *apiError) {
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return raw, checkToolChoice(raw, "tool_choice")
	}
	var obj struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Type != "function" || obj.Name == "" {
		return nil, badRequest("tool_choice", "tool_choice must be none, auto, required or {\"type\": \"function\", \"name\": ...}")
	}
	b, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": obj.Name}})
	return b, nil
}
