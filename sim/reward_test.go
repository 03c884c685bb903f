package sim

import (
	"context"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/reward"
)

// TestVLLMScorerOnOddServers: tpo's vLLM scorer gets raw rewards from the
// simulated servers that behave as some real ones do: one whose /classify
// refuses token ids (it switches to /pooling) and a very old one whose
// /pooling adds the generation prompt unless told not to.
func TestVLLMScorerOnOddServers(t *testing.T) {
	answers := []string{"[q=1.25 id=01] one", "[q=-0.5 id=02] two"}
	for _, tt := range []struct {
		name   string
		opts   Options
		method string
	}{
		{"classify refuses token ids", Options{RefuseTokenIDs: true}, reward.MethodClassify},
		{"pooling adds the generation prompt", Options{PoolingGenerationPrompt: true}, reward.MethodPooling},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.RewardNoise = -1
			s, ts := newTest(t, tt.opts)
			sc, err := reward.NewVLLM(reward.VLLMOptions{Options: httpx.Options{URLs: []string{ts.URL}}, Model: "sim-reward", Method: tt.method})
			if err != nil {
				t.Fatal(err)
			}
			if err := sc.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, err := sc.Score(context.Background(), []tpo.Message{{Role: tpo.RoleUser, Content: "q"}}, answers)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range answers {
				if got.Values[i] != s.Reward(a) {
					t.Errorf("response %d: score %v, want the raw reward %v", i, got.Values[i], s.Reward(a))
				}
			}
			st := s.Stats().Requests
			if tt.opts.RefuseTokenIDs && (st[EndpointClassify] != 1 || st[EndpointPooling] != int64(len(answers))) {
				t.Errorf("requests %v: want one refused /classify, then /pooling per response", st)
			}
		})
	}
}
