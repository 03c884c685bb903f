package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// roleTool is the role of a message that carries a tool's result.
const roleTool = "tool"

// StopToolCalls is the stop_reason of an answer that is the model's tool
// calls, returned unoptimized.
const StopToolCalls tpo.StopReason = "tool_calls"

// errToolCalls ends an optimization whose initial samples called tools.
var errToolCalls = errors.New("the model answered with tool calls")

// checkTools checks the tools of a request (the chat completions format:
// function tools) and its tool choice; toolsParam and choiceParam name
// them in errors. An empty list is no tools.
func checkTools(t toolSpec, toolsParam, choiceParam string) *apiError {
	if isNull(t.Tools) {
		return nil
	}
	var tools []json.RawMessage
	if err := json.Unmarshal(t.Tools, &tools); err != nil {
		return badRequest(toolsParam, "%s must be an array of tools: %s", toolsParam, jsonErrText(err))
	}
	for i, raw := range tools {
		param := fmt.Sprintf("%s[%d]", toolsParam, i)
		var tool struct {
			Type     string `json:"type"`
			Function *struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := json.Unmarshal(raw, &tool); err != nil {
			return badRequest(param, "%s must be an object: %s", param, jsonErrText(err))
		}
		if tool.Type != "function" {
			return badRequest(param+".type", "%s has type %q: tpo serve offers function tools only", param, tool.Type)
		}
		if tool.Function == nil || tool.Function.Name == "" {
			return badRequest(param+".function.name", "%s has no function name", param)
		}
	}
	return checkToolChoice(t.Choice, choiceParam)
}

// checkToolChoice checks a tool choice: none, auto, required, or an
// object naming a tool.
func checkToolChoice(raw json.RawMessage, param string) *apiError {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "none", "auto", "required":
			return nil
		}
		return badRequest(param, "%s %q: want none, auto, required or an object naming a tool", param, s)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return badRequest(param, "%s must be a string or an object", param)
	}
	return nil
}

// readToolCalls reads the tool calls of an assistant message.
func readToolCalls(param string, raw json.RawMessage) ([]openai.ToolCall, *apiError) {
	var calls []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function *struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &calls); err != nil {
		return nil, badRequest(param, "%s must be an array of tool calls: %s", param, jsonErrText(err))
	}
	out := make([]openai.ToolCall, 0, len(calls))
	for i, c := range calls {
		p := fmt.Sprintf("%s[%d]", param, i)
		switch {
		case c.Type != "" && c.Type != "function":
			return nil, badRequest(p+".type", "%s has type %q: only function calls are supported", p, c.Type)
		case c.ID == "":
			return nil, badRequest(p+".id", "%s has no id", p)
		case c.Function == nil || c.Function.Name == "":
			return nil, badRequest(p+".function.name", "%s has no function name", p)
		}
		out = append(out, openai.ToolCall{ID: c.ID, Type: "function",
			Function: openai.FunctionCall{Name: c.Function.Name, Arguments: c.Function.Arguments}})
	}
	return out, nil
}

// renderConversation returns the conversation as the optimization's
// calls see it (critique, updates, scoring): text turns, with every tool
// call and every tool result kept, written out. An assistant turn that
// called tools lists its calls after its text ("[tool call call_1:
// get_weather({"city":"Paris"})]"); a tool result is a user turn that
// says which call it answers ("[result of tool call call_1
// (get_weather)]" and the result).
func renderConversation(conv []openai.Message) []tpo.Message {
	names := map[string]string{} // call id → function name
	out := make([]tpo.Message, 0, len(conv))
	for _, m := range conv {
		switch {
		case m.Role == roleTool:
			head := "[result of tool call " + m.ToolCallID
			if name := names[m.ToolCallID]; name != "" {
				head += " (" + name + ")"
			}
			out = append(out, tpo.Message{Role: tpo.RoleUser, Content: head + "]\n" + m.Content})
		case len(m.ToolCalls) > 0:
			var b strings.Builder
			b.WriteString(m.Content)
			for _, c := range m.ToolCalls {
				names[c.ID] = c.Function.Name
				if b.Len() > 0 {
					b.WriteString("\n")
				}
				fmt.Fprintf(&b, "[tool call %s: %s(%s)]", c.ID, c.Function.Name, c.Function.Arguments)
			}
			out = append(out, tpo.Message{Role: m.Role, Content: b.String()})
		default:
			out = append(out, tpo.Message{Role: m.Role, Content: m.Content})
		}
	}
	return out
}

// toolOutcome is what the initial samples of a request with tools did.
type toolOutcome struct {
	// Samples is the number of initial samples, Called how many of them
	// called tools.
	Samples, Called int
	// Calls are the samples that called tools, as the model produced
	// them, when they were at least half: the answer is then theirs.
	Calls []openai.Choice
}

// answered reports whether the answer is the model's tool calls.
func (t *toolOutcome) answered() bool { return t != nil && len(t.Calls) > 0 }

// why says why the answer is the model's tool calls, or what became of
// the samples that called tools.
func (t *toolOutcome) why() string {
	if t.answered() {
		return fmt.Sprintf("the model answered with tool calls (%d of %d initial samples called tools): returned as it produced them, not optimized",
			t.Called, t.Samples)
	}
	return fmt.Sprintf("%d of %d initial samples called tools and were set aside: the text answers were optimized", t.Called, t.Samples)
}

// toolSampler is the policy of an optimization whose request offers
// tools: it asks for the initial samples with the conversation and the
// tools as the client sent them, and sends every other call (critique,
// updates: text prompts) to inner. When at least half of the samples call
// tools, the optimization ends with errToolCalls and the samples that
// called tools are the answer; otherwise the text samples are optimized.
type toolSampler struct {
	up    Upstream
	inner tpo.Generator
	model string
	conv  []openai.Message
	tools toolSpec

	mu  sync.Mutex
	out *toolOutcome
}

func (t *toolSampler) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	if req.Stage != tpo.StageSample {
		return t.inner.Generate(ctx, req)
	}
	samp := req.Sampling
	cr := openai.ChatRequest{Model: t.model, Messages: t.conv, Temperature: &samp.Temperature, TopP: &samp.TopP,
		MaxTokens: &samp.MaxTokens, Seed: req.Seed, Tools: t.tools.Tools, ToolChoice: t.tools.Choice,
		ParallelToolCalls: t.tools.ParallelToolCalls}
	choices, usage, err := t.up.Choices(ctx, cr, max(req.N, 1))
	gen := tpo.Generation{Usage: usage}
	out := &toolOutcome{Samples: len(choices)}
	var calls []openai.Choice
	for _, c := range choices {
		if len(c.Message.ToolCalls) > 0 {
			calls = append(calls, c)
			continue
		}
		gen.Texts = append(gen.Texts, c.Message.Content)
		gen.Finish = append(gen.Finish, c.FinishReason)
	}
	out.Called = len(calls)
	if err == nil && len(calls) > 0 && 2*len(calls) >= len(choices) {
		out.Calls = calls
		err = errToolCalls
	}
	t.mu.Lock()
	t.out = out
	t.mu.Unlock()
	return gen, err
}

// outcome returns what the initial samples did, or nil before they were
// asked for.
func (t *toolSampler) outcome() *toolOutcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out
}
