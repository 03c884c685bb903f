package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/reward"
	"github.com/tpoproject/tpo/tpotest"
)

// newJudgeEnv serves a Server whose policy and judge (the default
// reward, as in tpo serve) are one fake chat server, reached through the
// openai client.
func newJudgeEnv(t *testing.T) (*testEnv, *tpotest.ChatServer) {
	t.Helper()
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{
		Respond: func(req tpotest.ChatRequestRecord, choice int) string {
			switch {
			case req.Logprobs: // the judge asks for logprobs
				return fmt.Sprint(len(req.Prompt())%9 + 1)
			case strings.Contains(req.Prompt(), "<improved_response>"):
				return "<improved_response>better " + tpotest.DefaultChatReply(req, choice) + "</improved_response>"
			}
			return tpotest.DefaultChatReply(req, choice)
		},
	})
	judge, err := reward.NewJudge(reward.JudgeOptions{Client: newOpenAIClient(t, "judge", chat)})
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, func(o *Options) {
		o.Policy = OpenAI(newOpenAIClient(t, "policy", chat))
		o.Scorers, o.DefaultReward = map[string]tpo.Scorer{"judge": judge}, "judge"
	})
	return e, chat
}

// TestUsageCountsTheJudge: with the judge as the reward (tpo serve's
// default), the usage of every kind of answer is the sum of the usage the
// model server reported for every call the request caused, the judge's
// included, and the tpo object's stages add up to it, the judge's tokens
// in stage score.
func TestUsageCountsTheJudge(t *testing.T) {
	e, chat := newJudgeEnv(t)
	const settings = `"tpo":{"width":3,"depth":1},"seed":1`
	tests := []struct {
		name string
		// ask sends the request and returns the usage and the tpo object
		// of its answer.
		ask func(t *testing.T) (openai.Usage, *Optimization)
	}{
		{"chat", func(t *testing.T) (openai.Usage, *Optimization) {
			var c completion
			decodeJSON(t, e.post(t, `{"model":"test-model","messages":[{"role":"user","content":"hello there"}],`+settings+`}`), http.StatusOK, &c)
			return *c.Usage, c.TPO
		}},
		{"chat streamed", func(t *testing.T) (openai.Usage, *Optimization) {
			resp := e.post(t, `{"model":"test-model","messages":[{"role":"user","content":"hello there"}],"stream":true,"stream_options":{"include_usage":true},`+settings+`}`)
			var u openai.Usage
			var o *Optimization
			for _, ev := range readSSE(t, resp.Body) {
				var ch streamChunk
				if ev.Data == "" || ev.Data == "[DONE]" || json.Unmarshal([]byte(ev.Data), &ch) != nil {
					continue
				}
				if ch.Usage != nil {
					u = *ch.Usage
				}
				if len(ch.Choices) > 0 && ch.Choices[0].FinishReason != nil && ch.TPO != nil {
					o = new(Optimization)
					if err := json.Unmarshal(*ch.TPO, o); err != nil {
						t.Fatal(err)
					}
				}
			}
			return u, o
		}},
		{"response", func(t *testing.T) (openai.Usage, *Optimization) {
			var r response
			decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"test-model","input":"hello there",`+settings+`}`), http.StatusOK, &r)
			return openai.Usage{PromptTokens: r.Usage.InputTokens, CompletionTokens: r.Usage.OutputTokens, TotalTokens: r.Usage.TotalTokens}, r.TPO
		}},
		{"batch line", func(t *testing.T) (openai.Usage, *Optimization) {
			content := chatLines(1, func(int) string {
				return `{"model":"test-model","messages":[{"role":"user","content":"hello there"}],` + settings + `}`
			})
			b := e.createBatch(t, e.upload(t, content), "/v1/chat/completions")
			b = pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
			out := outputLines(t, e.ts, b.OutputFileID)["req-0"]
			if out.Response == nil {
				t.Fatalf("batch %+v: no output line", b)
			}
			var c completion
			if err := json.Unmarshal(out.Response.Body, &c); err != nil {
				t.Fatal(err)
			}
			return *c.Usage, c.TPO
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := chat.Usage()
			got, o := tt.ask(t)
			after := chat.Usage()
			want := openai.Usage{PromptTokens: after.PromptTokens - before.PromptTokens, CompletionTokens: after.CompletionTokens - before.CompletionTokens}
			want.TotalTokens = want.PromptTokens + want.CompletionTokens
			if got != want {
				t.Errorf("usage = %+v; the model server reported %+v for the %d calls", got, want, after.Requests-before.Requests)
			}
			if o == nil {
				t.Fatal("no tpo object")
			}
			var sum StageUsage
			for _, su := range o.Stages {
				sum.addTokens(tpo.Usage{PromptTokens: su.PromptTokens, CompletionTokens: su.CompletionTokens})
			}
			if sum.PromptTokens != got.PromptTokens || sum.CompletionTokens != got.CompletionTokens {
				t.Errorf("the stages add up to %d + %d tokens, the usage is %+v (stages %+v)", sum.PromptTokens, sum.CompletionTokens, got, o.Stages)
			}
			if sc := o.Stages[tpo.StageScore]; sc.PromptTokens == 0 || sc.CompletionTokens == 0 || sc.Requests != o.RewardCalls {
				t.Errorf("stage score = %+v: want the judge's tokens and %d reward calls", sc, o.RewardCalls)
			}
		})
	}
}
