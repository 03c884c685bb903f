package sim

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Short answers keep their tags: only max_tokens may cut them, so the
// share of update answers without a block is UnparsedRate, whatever the
// lengths.
func TestShortUpdatesKeepTheirTags(t *testing.T) {
	ids := []string{"aa", "bb"}
	conv := "user\n[q=1.0 id=aa] [q=2.0 id=bb]\nassistant\n" + CritiqueMarker{Hash: CritiqueHash(ids), Of: ids}.Format() +
		"\nassistant\n" + InstructionMarker{From: CritiqueHash(ids)}.Format() + "\nuser\nanswer between <improved_response> tags\n"
	for _, mean := range []float64{5, 40, 350} {
		g := generator{seed: "4", meanTokens: mean, sigma: 0.6, gain: 0.5, unparsedRate: 0.05}
		without := 0
		const n = 2000
		for i := range n {
			c := g.generate(genRequest{conv: conv, childSeed: uint64(i), temperature: 0.7, maxTokens: 4096})
			open, closed := strings.Contains(c.Text, "<improved_response>"), strings.Contains(c.Text, "</improved_response>")
			if open != closed {
				t.Fatalf("mean %g: a block with one tag only: %q", mean, c.Text)
			}
			if !open {
				without++
			}
			if want := (len(c.Text) + 3) / 4; c.Tokens < want-1 {
				t.Fatalf("mean %g: %d tokens for %d bytes", mean, c.Tokens, len(c.Text))
			}
		}
		// 5% of 2000 is 100; the binomial's sd is under 10.
		if without < 60 || without > 140 {
			t.Errorf("mean %g tokens: %d of %d updates without a block, want about 100", mean, without, n)
		}
	}
}

func TestPlateau(t *testing.T) {
	m := ParseMarkers("[q=0.000 id=aa] [q=2.000 id=bb]") // best 2, worst 0: a spread of 2
	for _, tc := range []struct {
		plateau          float64
		wantWorse        bool    // some updates score below the best
		minMean, maxMean float64 // of the gain over the best
	}{
		{0, false, 0.4, 0.6},   // no plateau: the gain's mean is UpdateGain
		{4, false, 0.2, 0.3},   // half way: half the gain
		{2, true, -0.05, 0.05}, // at the plateau: noise around the best
	} {
		g := generator{gain: 0.5, plateau: tc.plateau}
		worse, sum := false, 0.0
		for i := range 4000 {
			q := g.updateQ(m, 2, rand.New(rand.NewPCG(uint64(i), 7)))
			worse = worse || q < 2
			sum += q - 2
		}
		if mean := sum / 4000; worse != tc.wantWorse || mean < tc.minMean || mean > tc.maxMean {
			t.Errorf("plateau %g: some worse %v, mean gain %.3f; want %v and a mean in [%g, %g]", tc.plateau, worse, mean, tc.wantWorse, tc.minMean, tc.maxMean)
		}
	}
}
