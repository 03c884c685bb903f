package tpo_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

// Optimize one conversation. Real programs use openai.New for the policy
// and a reward scorer (reward.NewVLLM, reward.NewTEI, reward.NewJudge or
// reward.NewExec); the fakes here keep the example self-contained.
func ExampleOptimizer_Optimize() {
	policy := &tpotest.Policy{}
	scorer := &tpotest.Reward{Func: func(_ []tpo.Message, response string) float64 {
		return float64(strings.Count(response, "improved"))
	}}
	cfg := tpo.DefaultConfig() // N=5, D=2, temperature 0.7, top_p 0.95, 2048 tokens
	opt := &tpo.Optimizer{Policy: policy, Reward: scorer, Config: cfg}

	item := tpo.Item{ID: "q1", Messages: []tpo.Message{
		{Role: tpo.RoleUser, Content: "What is test-time preference optimization?"},
	}}
	res, err := opt.Optimize(context.Background(), item, tpo.Options{
		OnEvent: func(e tpo.Event) {
			if s, ok := e.(tpo.CandidatesScored); ok {
				fmt.Printf("step %d: %d candidates, best so far %g\n", s.Step, len(s.Candidates), s.Best)
			}
		},
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("answer:", res.Response)
	fmt.Println("policy requests:", res.Usage.Requests)
	// Output:
	// step 0: 5 candidates, best so far 0
	// step 1: 5 candidates, best so far 1
	// step 2: 5 candidates, best so far 1
	// answer: improved 3.0
	// policy requests: 7
}
