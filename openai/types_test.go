package openai_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tpoproject/tpo/openai"
)

// TestWireJSON: what tpo serve sends is what OpenAI sends, byte for byte
// where clients look (null refusal, logprobs and finish_reason; null
// content beside tool calls; content "" in the role delta).
func TestWireJSON(t *testing.T) {
	call := []openai.ToolCall{{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "f", Arguments: `{"x":1}`}}}
	zero := 0
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"message", openai.ResponseMessage{Role: "assistant", Content: "hi"}, `{"role":"assistant","content":"hi","refusal":null}`},
		{"tool calls", openai.ResponseMessage{Role: "assistant", ToolCalls: call},
			`{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}`},
		{"choice", openai.Choice{Message: openai.ResponseMessage{Role: "assistant", Content: "a"}, FinishReason: "stop"},
			`{"index":0,"message":{"role":"assistant","content":"a","refusal":null},"logprobs":null,"finish_reason":"stop"}`},
		{"role delta", openai.ChunkChoice{Delta: openai.Delta{Role: "assistant"}}, `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`},
		{"empty delta", openai.ChunkChoice{FinishReason: "stop"}, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`},
		{"tool delta", openai.ChunkChoice{Delta: openai.Delta{ToolCalls: []openai.ToolCall{{Index: &zero, ID: "c", Type: "function", Function: openai.FunctionCall{Name: "f"}}}}},
			`{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]},"logprobs":null,"finish_reason":null}`},
		{"request message", openai.Message{Role: "user", Content: "q"}, `{"role":"user","content":"q"}`},
		{"request tool calls", openai.Message{Role: "assistant", ToolCalls: call},
			`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}`},
		{"tool result", openai.Message{Role: "tool", Content: "42", ToolCallID: "call_1"}, `{"role":"tool","content":"42","tool_call_id":"call_1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestToolCallsRoundTrip: tool calls survive decoding, in messages and
// deltas.
func TestToolCallsRoundTrip(t *testing.T) {
	in := `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`
	var m openai.ResponseMessage
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	want := []openai.ToolCall{{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}
	if m.Content != "" || !reflect.DeepEqual(m.ToolCalls, want) {
		t.Errorf("decoded %+v", m)
	}
	var d openai.Delta
	if err := json.Unmarshal([]byte(in), &d); err != nil || !reflect.DeepEqual(d.ToolCalls, want) {
		t.Errorf("delta %+v, %v", d, err)
	}
}
