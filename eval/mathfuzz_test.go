package eval

import (
	"strings"
	"testing"
)

var mathSeeds = []string{
	`\boxed{\frac{1}{2}}`, `\boxed 5`, `\fbox{x = 3}`, `\boxed{`, `\boxed{}}`, `Final answer: $\$18.90$.`,
	`The answer is (1, 2).`, `**Answer:** [-2, 7)`, `\left( 3, \frac{\pi}{2} \right)`,
	`\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}`, `\{1\pm\sqrt{5},-2\}`, `(-\infty, 2) \cup (3, \infty)`,
	`5\text{ cm}`, `90^\circ`, `1,000`, `\frac12`, `\sqrt[3]{-8}`, `2^{2^{2^{2}}}`, `((((`, `\\\\`, `\`, `$`,
	"Answer $9$", `So \[ 9 \]`, "$$9$$", `\( 9 \)`, "$a = 3$ and $b = 2 + 2 = 4$.", `\\boxed{\\dfrac{1}{2}}`,
	`$\{x = 1\}$`, `\$5 and $`, `1\!000`, `\tfrac12`,
	`1\frac{4}{5}`, `\text{(C)}`, `x \in [1,2]`, `3 \pm 2\sqrt{2}`, `\pm\pm\pm\pm`, "\x00\xff",
}

func FuzzExtractAnswer(f *testing.F) {
	for _, s := range mathSeeds {
		f.Add(s)
		f.Add("So the answer is $\\boxed{" + s + "}$.")
	}
	f.Fuzz(func(t *testing.T, response string) {
		a, ok := ExtractAnswer(response)
		if ok != (a != "") {
			t.Fatalf("ExtractAnswer(%q) = %q, %v: ok must mean a non-empty answer", response, a, ok)
		}
		if _, src := FindAnswer(response); (src != NoAnswer) != ok {
			t.Fatalf("FindAnswer(%q) says %q but ExtractAnswer says %v", response, src, ok)
		}
		if ok && !Equivalent(a, a) {
			t.Errorf("extracted answer %q is not equivalent to itself (normalized %q)", a, Normalize(a))
		}
	})
}

func FuzzEquivalent(f *testing.F) {
	for i, s := range mathSeeds {
		f.Add(s, mathSeeds[(i+1)%len(mathSeeds)], i%2 == 0)
		f.Add(s, Normalize(s), false)
	}
	f.Fuzz(func(t *testing.T, a, b string, unordered bool) {
		_ = Normalize(a)
		got := equivalent(a, b, unordered)
		if strings.TrimSpace(a) != "" && !equivalent(a, a, unordered) {
			t.Errorf("%q is not equivalent to itself (normalized %q)", a, Normalize(a))
		}
		if got && (strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "") {
			t.Errorf("empty answer judged equivalent: %q, %q", a, b)
		}
	})
}
