package eval

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

func TestRescore(t *testing.T) {
	items := []RewardItem{{ID: "a", Response: "1"}, {ID: "b", Response: "nan"}, {ID: "c", Response: "3"}, {ID: "d", Response: "fail"}}
	s := &tpotest.Reward{Func: func(_ []tpo.Message, r string) float64 {
		switch r {
		case "nan":
			return math.NaN()
		case "1":
			return 1
		}
		return 3
	}}
	// The fake fails the call of "d" (whichever order the calls come in).
	failing := scorerFunc(func(ctx context.Context, m []tpo.Message, rs []string) (tpo.Scores, error) {
		if rs[0] == "fail" {
			return tpo.Scores{}, errors.New("reward server down")
		}
		return s.Score(ctx, m, rs)
	})
	got, err := Rescore(context.Background(), failing, items, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != 4 || got.Scored != 2 || got.Failed != 2 || got.Mean() != 2 || got.First == nil {
		t.Errorf("got %+v, want total 4 over 2, 2 failed", got)
	}
	if msg := got.First.Error(); !strings.Contains(msg, `item "b"`) && !strings.Contains(msg, `item "d"`) {
		t.Errorf("first error %q names no item", msg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Rescore(ctx, failing, items, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

type scorerFunc func(ctx context.Context, m []tpo.Message, rs []string) (tpo.Scores, error)

func (f scorerFunc) Score(ctx context.Context, m []tpo.Message, rs []string) (tpo.Scores, error) {
	return f(ctx, m, rs)
}
