package sim

import (
	"encoding/json"
	"fmt"
	"strings"
)

// tool is a function tool a chat request offers.
type tool struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// answerMessage is the message of an answer: text, or tool calls.
type answerMessage struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// toolCall is a call of a function tool in an answer.
type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// withToolCalls makes the simulated model call a tool, the way a real one
// would decide to: when the request offers tools and its last turn is the
// user's and names one of them, every choice calls the first named, with
// the user's words as its argument. A conversation ending with a tool's
// result gets text. Not streamed.
func withToolCalls(choices []chatChoice, req chatRequest, id string) []chatChoice {
	if len(req.Tools) == 0 || len(req.Messages) == 0 {
		return choices
	}
	last := req.Messages[len(req.Messages)-1]
	if last.Role != "user" {
		return choices
	}
	for _, t := range req.Tools {
		name := t.Function.Name
		if t.Type != "function" || name == "" || !strings.Contains(last.Content, name) {
			continue
		}
		args, _ := json.Marshal(map[string]string{"query": last.Content})
		for i := range choices {
			var c toolCall
			c.ID, c.Type = fmt.Sprintf("call_%s_%d", strings.TrimPrefix(id, "chatcmpl-"), i), "function"
			c.Function.Name, c.Function.Arguments = name, string(args)
			choices[i].Message = answerMessage{Role: "assistant", ToolCalls: []toolCall{c}}
			choices[i].FinishReason = "tool_calls"
		}
		return choices
	}
	return choices
}
