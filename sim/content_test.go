package sim

import (
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
