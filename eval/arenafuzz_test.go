package eval

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func FuzzParseArenaVerdict(f *testing.F) {
	for _, s := range []string{"[[A>B]]", "[[A>>B]] [[B>A]]", "[[A=B]][[A=B]]", "[[", "[[<>=]]", "[[B<<A]]", "[[C]]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		l, err := ParseArenaVerdict(reply)
		switch {
		case err == nil && !strings.Contains(reply, "[["+l+"]]"):
			t.Errorf("label %q is not in the reply %q", l, reply)
		case err != nil && l != "":
			t.Errorf("label %q with error %v", l, err)
		case err != nil && !errors.Is(err, ErrNoVerdict) && !errors.Is(err, ErrAmbiguousVerdict):
			t.Errorf("unexpected error %v", err)
		}
	})
}

func FuzzReadArenaJudgments(f *testing.F) {
	f.Add(`{"question_id": "q", "model": "m", "games": [{"score": "A>B"}, {"score": null}]}`)
	f.Add(`{"uid": "q", "model": "m", "games": [null, {"score": "B>>A", "judgment": {"answer": "x"}}]}`)
	f.Add("{\"question_id\": \"q\", \"model\": \"m\", \"games\": []}\n{")
	f.Fuzz(func(t *testing.T, data string) {
		js, err := ReadArenaJudgments([]byte(data), "f.jsonl")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.jsonl:") {
				t.Errorf("error %q does not name the file and line", err)
			}
			return
		}
		for _, s := range ArenaHardScores(js, ArenaOptions{Rounds: 10}) {
			if math.IsNaN(s.Score) || s.Score < 0 || s.Score > 100 || s.Lower > s.Score+1e-9 || s.Upper < s.Score-1e-9 {
				t.Errorf("score %+v", s)
			}
			if s.Games+s.NullGames != 2*countModel(js, s.Model) {
				t.Errorf("games %d + null %d for %d judgments", s.Games, s.NullGames, countModel(js, s.Model))
			}
		}
	})
}

func countModel(js []ArenaJudgment, m string) int {
	n := 0
	for _, j := range js {
		if j.Model == m {
			n++
		}
	}
	return n
}
