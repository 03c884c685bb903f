package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

func testScorers() map[string]tpo.Scorer {
	return map[string]tpo.Scorer{"rm": &tpotest.Reward{}, "judge": &tpotest.Reward{}}
}

func testSettings(lim Limits) settings {
	return settings{Config: tpo.DefaultConfig(), DefaultReward: "rm", Scorers: testScorers(), Limits: lim}
}

func parse(t *testing.T, body string) (*plan, *apiError) {
	t.Helper()
	return parseRequest([]byte(body), testSettings(Limits{}))
}

func TestParseRequestConversation(t *testing.T) {
	p, aerr := parse(t, `{"model":"m","messages":[
		{"role":"developer","content":"Be brief."},
		{"role":"user","content":[{"type":"text","text":"first"},{"type":"text","text":"second"}]},
		{"role":"assistant","content":"earlier answer"},
		{"role":"user","content":"follow-up"}]}`)
	if aerr != nil {
		t.Fatalf("parseRequest: %v", aerr)
	}
	want := []tpo.Message{
		{Role: "system", Content: "Be brief."},
		{Role: "user", Content: "first\nsecond"},
		{Role: "assistant", Content: "earlier answer"},
		{Role: "user", Content: "follow-up"},
	}
	if !reflect.DeepEqual(p.Item.Messages, want) {
		t.Errorf("messages = %+v, want %+v", p.Item.Messages, want)
	}
	if p.Model != "m" || p.N != 1 || p.Reward != "rm" || p.Off || p.Stream {
		t.Errorf("plan = %+v", p)
	}
	if !reflect.DeepEqual(p.Config, tpo.DefaultConfig()) {
		t.Errorf("config = %+v, want the defaults", p.Config)
	}
}

func TestParseRequestOverrides(t *testing.T) {
	p, aerr := parse(t, `{"model":"m","messages":[{"role":"user","content":"hi"}],
		"temperature":0.2,"top_p":0.5,"max_tokens":100,"max_completion_tokens":300,"seed":7,"n":3,
		"stream":true,"stream_options":{"include_usage":true},
		"tpo":{"mode":"revision","width":4,"depth":3,"reward":"judge","critique_temperature":0.1,
		       "critique_top_p":0.9,"critique_max_tokens":50,"max_text_chars":1000}}`)
	if aerr != nil {
		t.Fatalf("parseRequest: %v", aerr)
	}
	seed := int64(7)
	want := tpo.Config{Mode: tpo.ModeRevision, Width: 4, Depth: 3,
		Sampling: tpo.Sampling{Temperature: 0.2, TopP: 0.5, MaxTokens: 300},
		Critique: tpo.Sampling{Temperature: 0.1, TopP: 0.9, MaxTokens: 50},
		Seed:     &seed, MaxTextChars: 1000}
	if !reflect.DeepEqual(p.Config, want) {
		t.Errorf("config = %+v, want %+v", p.Config, want)
	}
	if p.N != 3 || p.Reward != "judge" || !p.Stream || !p.IncludeUsage {
		t.Errorf("plan = %+v", p)
	}
}

func TestParseRequestPassThrough(t *testing.T) {
	p, aerr := parse(t, `{"model":"m","messages":[{"role":"assistant","content":"x"}],"tools":[{"type":"function"}],"tpo":{"mode":"off"},"stream":true}`)
	if aerr != nil {
		t.Fatalf("parseRequest: %v", aerr)
	}
	if !p.Off || !p.Stream {
		t.Fatalf("plan = %+v, want a streamed pass-through", p)
	}
	var got map[string]any
	if err := json.Unmarshal(p.Body, &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got["tpo"]; ok {
		t.Errorf("pass-through body still has tpo: %s", p.Body)
	}
	if _, ok := got["tools"]; !ok {
		t.Errorf("pass-through body lost tools: %s", p.Body)
	}
}

func TestParseRequestErrors(t *testing.T) {
	const user = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, body, param, msg string
	}{
		{"not json", `{`, "", "not a JSON object"},
		{"array", `[]`, "", "not a JSON object"},
		{"no messages", `{"model":"m"}`, "messages", "non-empty"},
		{"last not user", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}`, "messages", "must end with a user turn"},
		{"empty last user", `{"messages":[{"role":"user","content":""}]}`, "messages", "empty"},
		{"image", `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"http://x"}}]}]}`, "messages[0].content[1]", "image"},
		{"audio part", `{"messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, "messages[0].content[0]", "only text"},
		{"content number", `{"messages":[{"role":"user","content":5}]}`, "messages[0].content", "string or an array"},
		{"tool without call id", `{"messages":[{"role":"tool","content":"x"},{"role":"user","content":"y"}]}`, "messages[0].tool_call_id", "without tool_call_id"},
		{"function role", `{"messages":[{"role":"function","name":"f","content":"x"},{"role":"user","content":"y"}]}`, "messages[0].role", "legacy"},
		{"bad role", `{"messages":[{"role":"wizard","content":"y"}]}`, "messages[0].role", "unknown role"},
		{"tool call without name", `{"messages":[{"role":"assistant","tool_calls":[{"id":"1"}]},{"role":"user","content":"y"}]}`, "messages[0].tool_calls[0].function.name", "no function name"},
		{"tool call without id", `{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"user","content":"y"}]}`, "messages[0].tool_calls[0].id", "no id"},
		{"tool calls of a user", `{"messages":[{"role":"user","content":"y","tool_calls":[]}]}`, "messages[0].tool_calls", "only assistant"},
		{"tool type", `{"tools":[{}],` + user + `}`, "tools[0].type", "function tools only"},
		{"tool name", `{"tools":[{"type":"function","function":{"description":"x"}}],` + user + `}`, "tools[0].function.name", "no function name"},
		{"tools not array", `{"tools":{"type":"function"},` + user + `}`, "tools", "array of tools"},
		{"tool choice", `{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes",` + user + `}`, "tool_choice", "want none, auto, required"},
		{"functions", `{"functions":[{"name":"f"}],` + user + `}`, "functions", "legacy"},
		{"preset without model", `{"model":"tpo-n3/",` + user + `}`, "model", "no model after it"},
		{"preset bon depth", `{"model":"bon-d2/m",` + user + `}`, "model", "no depth"},
		{"preset off width", `{"model":"off-n2/m",` + user + `}`, "model", "takes no -d or -n"},
		{"preset width", `{"model":"tpo-n40/m",` + user + `}`, "model", "between 1 and 32, got 40"},
		{"preset depth", `{"model":"revision-d11/m",` + user + `}`, "model", "at most 10, got 11"},
		{"preset twice", `{"model":"tpo-n2-n3/m",` + user + `}`, "model", "sets n twice"},
		{"stop", `{"stop":"x",` + user + `}`, "stop", "not supported"},
		{"json format", `{"response_format":{"type":"json_object"},` + user + `}`, "response_format", "not supported"},
		{"logprobs", `{"logprobs":true,` + user + `}`, "logprobs", "not supported"},
		{"width too big", `{"tpo":{"width":33},` + user + `}`, "tpo.width", "between 1 and 32"},
		{"width zero", `{"tpo":{"width":0},` + user + `}`, "tpo.width", "between 1 and 32"},
		{"depth too big", `{"tpo":{"depth":11},` + user + `}`, "tpo.depth", "between 0 and 10"},
		{"depth negative", `{"tpo":{"depth":-1},` + user + `}`, "tpo.depth", "between 0 and 10"},
		{"bad mode", `{"tpo":{"mode":"best"},` + user + `}`, "tpo.mode", "unknown mode"},
		{"unknown reward", `{"tpo":{"reward":"nope"},` + user + `}`, "tpo.reward", "judge, rm"},
		{"unknown setting", `{"tpo":{"widht":3},` + user + `}`, "tpo.widht", "unknown setting"},
		{"width string", `{"tpo":{"width":"3"},` + user + `}`, "tpo.width", "want a JSON number"},
		{"tpo not object", `{"tpo":3,` + user + `}`, "tpo", "want a JSON object"},
		{"temperature", `{"temperature":3,` + user + `}`, "temperature", "[0, 2]"},
		{"top_p", `{"top_p":0,` + user + `}`, "top_p", "(0, 1]"},
		{"max_tokens", `{"max_tokens":0,` + user + `}`, "max_tokens", "between 1 and 16384, got 0"},
		{"max_completion_tokens", `{"max_completion_tokens":-5,` + user + `}`, "max_completion_tokens", "between 1 and 16384"},
		{"max_tokens too big", `{"max_tokens":1000000,` + user + `}`, "max_tokens", "between 1 and 16384, got 1000000"},
		{"max_completion_tokens too big", `{"max_tokens":10,"max_completion_tokens":16385,` + user + `}`, "max_completion_tokens", "between 1 and 16384"},
		{"critique_max_tokens too big", `{"tpo":{"critique_max_tokens":8193},` + user + `}`, "tpo.critique_max_tokens", "between 1 and 8192, got 8193"},
		{"critique_max_tokens zero", `{"tpo":{"critique_max_tokens":0},` + user + `}`, "tpo.critique_max_tokens", "between 1 and 8192"},
		{"n", `{"n":17,` + user + `}`, "n", "between 1 and 16"},
		{"pass-through n", `{"n":17,"tpo":{"mode":"off"},` + user + `}`, "n", "between 1 and 16, got 17"},
		{"pass-through n zero", `{"n":0,"tpo":{"mode":"off"},` + user + `}`, "n", "between 1 and 16, got 0"},
		{"pass-through max_tokens", `{"max_tokens":99999,"tpo":{"mode":"off"},` + user + `}`, "max_tokens", "between 1 and 16384"},
		{"pass-through max_completion_tokens", `{"max_completion_tokens":99999,"tpo":{"mode":"off"},` + user + `}`, "max_completion_tokens", "between 1 and 16384"},
		{"n type", `{"n":"2",` + user + `}`, "n", "want a JSON number"},
		{"stream_options without stream", `{"stream_options":{"include_usage":true},` + user + `}`, "stream_options", "stream: true"},
		{"critique temperature", `{"tpo":{"critique_temperature":-1},` + user + `}`, "tpo.critique_temperature", "[0, 2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, aerr := parse(t, tt.body)
			if aerr == nil {
				t.Fatalf("parseRequest(%s) = %+v, want an error", tt.body, p)
			}
			if aerr.Status != http.StatusBadRequest || aerr.Type != typeInvalidRequest {
				t.Errorf("status, type = %d, %q; want 400, %q", aerr.Status, aerr.Type, typeInvalidRequest)
			}
			if aerr.Param != tt.param {
				t.Errorf("param = %q, want %q (message %q)", aerr.Param, tt.param, aerr.Message)
			}
			if !strings.Contains(aerr.Message, tt.msg) {
				t.Errorf("message = %q, want it to contain %q", aerr.Message, tt.msg)
			}
		})
	}
}

func TestParseRequestConfiguredLimits(t *testing.T) {
	lim := Limits{MaxWidth: 64, MaxDepth: 12, MaxN: 20, MaxTokens: 100, MaxCritiqueTokens: 50}
	body := `{"tpo":{"width":40,"depth":12,"critique_max_tokens":50},"n":20,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	p, aerr := parseRequest([]byte(body), testSettings(lim))
	if aerr != nil {
		t.Fatalf("parseRequest: %v", aerr)
	}
	if p.Config.Width != 40 || p.Config.Depth != 12 || p.N != 20 || p.Config.Sampling.MaxTokens != 100 || p.Config.Critique.MaxTokens != 50 {
		t.Errorf("width, depth, n, max tokens = %d, %d, %d, %d, %d; want 40, 12, 20, 100, 50",
			p.Config.Width, p.Config.Depth, p.N, p.Config.Sampling.MaxTokens, p.Config.Critique.MaxTokens)
	}
	for _, tt := range []struct{ body, param string }{
		{`{"max_tokens":101,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{`{"max_completion_tokens":101,"tpo":{"mode":"off"},"messages":[{"role":"user","content":"hi"}]}`, "max_completion_tokens"},
		{`{"tpo":{"critique_max_tokens":51},"messages":[{"role":"user","content":"hi"}]}`, "tpo.critique_max_tokens"},
		{`{"n":21,"tpo":{"mode":"off"},"messages":[{"role":"user","content":"hi"}]}`, "n"},
	} {
		if _, aerr := parseRequest([]byte(tt.body), testSettings(lim)); aerr == nil || aerr.Param != tt.param {
			t.Errorf("%s: error %+v, want a 400 on %s", tt.body, aerr, tt.param)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"tpo":{"width":3,"mode":"bon"}}`,
		`{"messages":[{"role":"user","content":[{"type":"refusal","refusal":"no"}]}],"n":2}`,
		`{"messages":[{"role":"user"}],"tpo":{"mode":"off"},"stream":true}`,
		`{"messages":null}`, `null`, `"x"`, `{"tpo":null,"messages":[{"role":"user","content":"x"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		p, aerr := parseRequest([]byte(body), testSettings(Limits{}))
		if (p == nil) == (aerr == nil) {
			t.Fatalf("parseRequest(%q) = %v, %v: want exactly one", body, p, aerr)
		}
		if aerr != nil {
			if aerr.Status != http.StatusBadRequest || aerr.Message == "" {
				t.Fatalf("error %+v: want a 400 with a message", aerr)
			}
			return
		}
		if p.N < 1 || p.N > 16 {
			t.Fatalf("accepted n = %d", p.N)
		}
		if p.Off {
			if !json.Valid(p.Body) {
				t.Fatalf("pass-through body is not JSON: %q", p.Body)
			}
			return
		}
		if err := p.Item.Validate(); err != nil {
			t.Fatalf("accepted an invalid conversation: %v", err)
		}
		if err := p.Config.Validate(); err != nil {
			t.Fatalf("accepted invalid settings: %v", err)
		}
		if p.Config.Width > 32 || p.Config.Depth > 10 || p.Config.Sampling.MaxTokens > DefaultMaxTokensCap || p.Config.Critique.MaxTokens > DefaultCritiqueMaxTokensCap {
			t.Fatalf("accepted out-of-bounds settings: %+v", p)
		}
	})
}
