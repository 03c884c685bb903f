// Package storetest checks that a run store behaves as tpo expects of it:
// the same tests pass against tpotest.MemStore, package sqlite and package
// postgres, and a store of your own can run them too.
//
// Run checks the write side, the methods of tpo.Store that the optimizer,
// the dataset runner and tpo serve call; RunRead checks the read side that
// the web UI, reports and exports use (ListRuns, GetRun, ListItems, GetItem,
// Results, DeleteRun); RunJobs the jobs of tpo serve (tpo.JobStore); and
// RunFiles the files of its Files API (files.Store: a directory, or
// package postgres's Files). Each test opens a new, empty store:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) tpo.Store {
//			s := mystore.New()
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The expectations are those of package sqlite, the reference store, except
// where a store cannot do better: times are compared to the microsecond
// (PostgreSQL's precision), a run's Config as JSON values (jsonb reorders
// keys), and texts as JSON encodes them (invalid UTF-8 becomes U+FFFD).
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// epoch is a time with whole microseconds, which every store keeps exactly.
var epoch = time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)

// Item makes an item with a system prompt and a user prompt naming id.
func Item(id string) tpo.Item {
	return tpo.Item{ID: id, Messages: []tpo.Message{
		{Role: tpo.RoleSystem, Content: "be kind"},
		{Role: tpo.RoleUser, Content: "prompt of " + id},
	}}
}

// Step makes step n with candidates of the given scores.
func Step(n int, scores ...float64) tpo.Step {
	s := tpo.Step{Step: n, Usage: tpo.Usage{Requests: 1, PromptTokens: 10 * (n + 1), CompletionTokens: 100}}
	for i, sc := range scores {
		s.Candidates = append(s.Candidates, tpo.Candidate{Text: fmt.Sprintf("answer %d.%d", n, i), Score: sc})
	}
	if n > 0 {
		s.Chosen = &tpo.Ref{Step: n - 1, Index: 0}
		s.Loss, s.Gradient = "critique", "instructions"
		s.Calls = []tpo.Call{{Stage: tpo.StageLoss, Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "compare"}}, N: 1}}
		s.Millis = map[tpo.Stage]int64{tpo.StageLoss: 1200, tpo.StageUpdate: 3400}
	}
	return s
}

// Result makes a result whose score is the best of its steps.
func Result(id string, steps []tpo.Step, errText string) tpo.Result {
	res := tpo.Result{ID: id, Prompt: "prompt of " + id, Steps: steps, Error: errText, ScoreCalls: len(steps)}
	first := true
	for i, s := range steps {
		for j, c := range s.Candidates {
			if first || c.Score > res.Score {
				res.Score, res.Response, res.Best = c.Score, c.Text, tpo.Ref{Step: i, Index: j}
				first = false
			}
			if i == 0 && (j == 0 || c.Score > res.InitialBest) {
				res.InitialBest = c.Score
			}
		}
		res.Usage.Add(s.Usage)
	}
	return res
}

// fullResult is a result that sets every field of Result, Step, Candidate
// and Call, so that a round trip that drops one shows.
func fullResult(id string) tpo.Result {
	seed := int64(42)
	rej := tpo.Ref{Step: 0, Index: 1}
	s0 := Step(0, 1.5, -2.25)
	s0.Candidates[1].Cut = true
	s0.Calls = []tpo.Call{{Stage: tpo.StageSample, Messages: Item(id).Messages, N: 2, Seed: &seed, Returned: 2,
		Usage: tpo.Usage{Requests: 1, PromptTokens: 12, CompletionTokens: 80, Retries: 1}, Millis: 950}}
	s0.ScoreUsage = tpo.Usage{Requests: 1, Retries: 2}
	s0.Millis = map[tpo.Stage]int64{tpo.StageSample: 950, tpo.StageScore: 30}
	s1 := Step(1, 3.75, 0.5)
	s1.Candidates[0].Unclosed = true
	s1.Candidates[0].Cut = true
	s1.Rejected = &rej
	s1.Unparsed = []string{"no block here", ""}
	s1.Notes = []string{"the critique was empty; asked again", "cut the chosen response to 100 bytes"}
	s1.Calls = append(s1.Calls, tpo.Call{Stage: tpo.StageUpdate, Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "improve"}},
		N: 2, Seed: &seed, Returned: 1, Error: "one choice was empty", Millis: 3400})
	s1.Usage.Retries = 3
	s1.ScoreUsage = tpo.Usage{Requests: 2, PromptTokens: 7, CompletionTokens: 1}
	res := Result(id, []tpo.Step{s0, s1}, "")
	res.Messages = Item(id).Messages
	res.ScoreCalls = 5
	res.ScoreUsage = tpo.Usage{Requests: 3, PromptTokens: 7, CompletionTokens: 1, Retries: 2}
	res.Usage.Retries = 4
	res.StopReason = tpo.StopPatience
	return res
}

// asJSON makes values comparable regardless of nil versus empty slices.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stored returns st as JSON after a trip through JSON, as a store keeps it.
func stored(t *testing.T, st tpo.ItemState) string {
	t.Helper()
	var back tpo.ItemState
	if err := json.Unmarshal([]byte(asJSON(t, st)), &back); err != nil {
		t.Fatal(err)
	}
	return asJSON(t, back)
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

// sameTime reports whether two optional times are equal.
func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// checkRun fails t unless got is want, Config compared as JSON values and
// times as instants.
func checkRun(t *testing.T, what string, got, want tpo.Run) {
	t.Helper()
	g, w := got, want
	g.Config, w.Config = nil, nil
	g.Created, w.Created = time.Time{}, time.Time{}
	g.Finished, w.Finished = nil, nil
	if asJSON(t, g) != asJSON(t, w) || !sameJSON(got.Config, want.Config) ||
		!got.Created.Equal(want.Created) || !sameTime(got.Finished, want.Finished) {
		t.Errorf("%s:\ngot  %s\nwant %s", what, asJSON(t, got), asJSON(t, want))
	}
}

// checkState fails t unless the item state got is want, as JSON stores
// them (invalid UTF-8 becomes U+FFFD either way).
func checkState(t *testing.T, what string, got, want tpo.ItemState) {
	t.Helper()
	if g, w := stored(t, got), stored(t, want); g != w {
		t.Errorf("%s:\ngot  %s\nwant %s", what, g, w)
	}
}

func mustRun(t *testing.T, s tpo.Store, key string) tpo.Run {
	t.Helper()
	r, _, err := s.OpenRun(context.Background(), tpo.Run{Key: key, Kind: "run", Source: "test.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustStart(t *testing.T, s tpo.Store, runID string, seq int, it tpo.Item) tpo.ItemState {
	t.Helper()
	st, err := s.StartItem(context.Background(), runID, seq, it)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustSave(t *testing.T, s tpo.Store, runID, itemID string, steps ...tpo.Step) {
	t.Helper()
	for _, st := range steps {
		if err := s.SaveStep(context.Background(), runID, itemID, st); err != nil {
			t.Fatal(err)
		}
	}
}

func mustFinish(t *testing.T, s tpo.Store, runID string, res tpo.Result) {
	t.Helper()
	if err := s.FinishItem(context.Background(), runID, res); err != nil {
		t.Fatal(err)
	}
}

// wantNotFound fails t unless err wraps tpo.ErrNotFound.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("%s: got %v, want an error wrapping tpo.ErrNotFound", what, err)
	}
}
