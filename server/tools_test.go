package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/tpotest"
)

const weatherTools = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`

// toolConvo is a conversation in which the model called a tool and the
// client sent its result.
const toolConvo = `"messages":[{"role":"user","content":"Weather in Paris?"},
	{"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
	{"role":"tool","tool_call_id":"call_0","content":"18C, sunny"}]`

func TestRenderConversation(t *testing.T) {
	conv := []openai.Message{
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", Content: "Let me look.", ToolCalls: []openai.ToolCall{
			{ID: "call_0", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}},
			{ID: "call_1", Function: openai.FunctionCall{Name: "get_time", Arguments: `{}`}}}},
		{Role: "tool", ToolCallID: "call_0", Content: "18C"},
		{Role: "tool", ToolCallID: "call_9", Content: "?"},
	}
	want := []tpo.Message{
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", Content: "Let me look.\n[tool call call_0: get_weather({\"city\":\"Paris\"})]\n[tool call call_1: get_time({})]"},
		{Role: "user", Content: "[result of tool call call_0 (get_weather)]\n18C"},
		{Role: "user", Content: "[result of tool call call_9]\n?"},
	}
	if got := renderConversation(conv); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestToolCallPassedThrough: when the initial samples call tools, the
// client gets the calls as the model produced them, unoptimized, and the
// tpo object says why; streamed, as tool call deltas.
func TestToolCallPassedThrough(t *testing.T) {
	e := newTestEnv(t, nil)
	e.up.toolCall = func(req openai.ChatRequest, i int) *openai.ToolCall {
		return &openai.ToolCall{ID: "call_" + string(rune('a'+i)), Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}
	}
	var c completion
	decodeJSON(t, e.post(t, `{"model":"llama",`+weatherTools+`,"tool_choice":"auto","messages":[{"role":"user","content":"Weather in Paris?"}]}`), http.StatusOK, &c)
	if len(c.Choices) != 1 || c.Choices[0].FinishReason != "tool_calls" || len(c.Choices[0].Message.ToolCalls) != 1 ||
		c.Choices[0].Message.ToolCalls[0].ID != "call_a" || c.Choices[0].Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
		t.Fatalf("choices = %+v", c.Choices)
	}
	s := c.TPO
	if s.StopReason != StopToolCalls || !strings.Contains(s.Unoptimized, "3 of 3 initial samples called tools") || s.Requests != 1 || s.RewardCalls != 0 {
		t.Errorf("summary = %+v", s)
	}
	if c.Usage.TotalTokens == 0 {
		t.Errorf("usage = %+v: the sample call cost something", c.Usage)
	}
	// The initial samples were asked for with the tools and the choice.
	reqs := e.up.toolRequests()
	if len(reqs) != 1 || string(reqs[0].ToolChoice) != `"auto"` || !strings.Contains(string(reqs[0].Tools), "get_weather") || reqs[0].Model != "llama" {
		t.Fatalf("tool requests = %+v", reqs)
	}
	items := e.store.Items(s.RunID)
	if len(items) != 1 || items[0].Result == nil || !strings.Contains(items[0].Result.Error, "not optimized: the model answered with tool calls") {
		t.Errorf("store items = %+v", items)
	}

	// Streamed: the role, one delta per call, the finish chunk.
	resp := e.post(t, `{"model":"llama","stream":true,"n":2,`+weatherTools+`,"messages":[{"role":"user","content":"Weather?"}]}`)
	var calls []string
	var finish []string
	for _, ev := range readSSE(t, resp.Body) {
		if ev.Data == "" || ev.Data == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []openai.ChunkChoice `json:"choices"`
			TPO     *Optimization        `json:"tpo"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
			t.Fatal(err)
		}
		for _, c := range ch.Choices {
			for _, tc := range c.Delta.ToolCalls {
				calls = append(calls, tc.ID)
			}
			if c.FinishReason != "" {
				finish = append(finish, c.FinishReason)
			}
		}
	}
	if strings.Join(calls, " ") != "call_a call_b" || strings.Join(finish, " ") != "tool_calls tool_calls" {
		t.Errorf("streamed calls %v, finish %v", calls, finish)
	}
}

// TestToolsTextAnswerOptimized: when most samples answer with text, the
// text answers are optimized as usual (the tool calls set aside, and
// said); the conversation with its tool call and result is kept whole in
// the critique and in the reward's context, and sent as it is with the
// tools for the initial samples.
func TestToolsTextAnswerOptimized(t *testing.T) {
	var mu sync.Mutex
	var contexts [][]tpo.Message
	e := newTestEnv(t, func(o *Options) {
		o.Scorers["len"] = &tpotest.Reward{Func: func(msgs []tpo.Message, r string) float64 {
			mu.Lock()
			defer mu.Unlock()
			contexts = append(contexts, msgs)
			return float64(len(r))
		}}
	})
	e.up.toolCall = func(req openai.ChatRequest, i int) *openai.ToolCall {
		if i == 2 {
			return &openai.ToolCall{ID: "call_x", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{}`}}
		}
		return nil
	}
	var c completion
	decodeJSON(t, e.post(t, `{"model":"llama",`+weatherTools+`,`+toolConvo+`}`), http.StatusOK, &c)
	if len(c.Choices) != 1 || c.Choices[0].FinishReason != "stop" || c.Choices[0].Message.Content == "" || len(c.Choices[0].Message.ToolCalls) != 0 {
		t.Fatalf("choices = %+v", c.Choices)
	}
	s := c.TPO
	if s.StopReason != tpo.StopDepth || s.Requests != 7 || len(s.Notes) == 0 || !strings.Contains(strings.Join(s.Notes, "\n"), "1 of 3 initial samples called tools and were set aside") {
		t.Errorf("summary = %+v", s)
	}
	reqs := e.up.toolRequests()
	if len(reqs) != 1 || len(reqs[0].Messages) != 3 || reqs[0].Messages[1].ToolCalls[0].ID != "call_0" || reqs[0].Messages[2].ToolCallID != "call_0" {
		t.Fatalf("the samples' request = %+v", reqs)
	}
	// The critique quotes the call and its result.
	var critique string
	for _, call := range e.up.policy.Calls() {
		if call.Stage == tpo.StageLoss {
			critique = call.Messages[len(call.Messages)-1].Content
		}
	}
	for _, want := range []string{`[tool call call_0: get_weather({"city":"Paris"})]`, "[result of tool call call_0 (get_weather)]\n18C, sunny"} {
		if !strings.Contains(critique, want) {
			t.Errorf("the critique prompt lacks %q:\n%s", want, critique)
		}
	}
	// The reward model saw the whole conversation too.
	mu.Lock()
	msgs := contexts
	mu.Unlock()
	if len(msgs) == 0 || len(msgs[0]) != 3 || !strings.Contains(msgs[0][1].Content, "get_weather") || !strings.Contains(msgs[0][2].Content, "18C, sunny") {
		t.Errorf("reward contexts = %+v", msgs)
	}
}
