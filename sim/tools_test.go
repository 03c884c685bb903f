package sim

import "testing"

func TestWithToolCalls(t *testing.T) {
	weather := tool{Type: "function"}
	weather.Function.Name = "get_weather"
	tests := []struct {
		name  string
		req   chatRequest
		calls bool
	}{
		{"named", chatRequest{Tools: []tool{weather}, Messages: []chatMessage{{Role: "user", Content: "use get_weather for Paris"}}}, true},
		{"not named", chatRequest{Tools: []tool{weather}, Messages: []chatMessage{{Role: "user", Content: "hello"}}}, false},
		{"no tools", chatRequest{Messages: []chatMessage{{Role: "user", Content: "use get_weather"}}}, false},
		{"after the result", chatRequest{Tools: []tool{weather}, Messages: []chatMessage{{Role: "user", Content: "use get_weather"}, {Role: "tool", Content: "18C"}}}, false},
	}
	for _, tt := range tests {
		choices := withToolCalls([]chatChoice{{Message: answerMessage{Role: "assistant", Content: "text"}, FinishReason: "stop"}}, tt.req, "chatcmpl-1")
		c := choices[0]
		if got := len(c.Message.ToolCalls) == 1; got != tt.calls {
			t.Errorf("%s: %+v", tt.name, c)
			continue
		}
		if tt.calls && (c.FinishReason != "tool_calls" || c.Message.Content != "" || c.Message.ToolCalls[0].Function.Name != "get_weather" ||
			c.Message.ToolCalls[0].Function.Arguments != `{"query":"use get_weather for Paris"}`) {
			t.Errorf("%s: %+v", tt.name, c)
		}
	}
}
