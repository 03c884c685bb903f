package eval

import (
	"testing"
)

func TestExtractAnswer(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"boxed", `So the answer is $\boxed{5}$.`, "5", true},
		{"last boxed", `First \boxed{3}, then \boxed{4}.`, "4", true},
		{"nested braces", `$\boxed{\frac{1}{\sqrt{2}}}$`, `\frac{1}{\sqrt{2}}`, true},
		{"escaped braces", `\boxed{\{1,2\}}`, `\{1,2\}`, true},
		{"fbox", `\fbox{7}`, "7", true},
		{"boxed without braces", `The answer is $\boxed 5$.`, "5", true},
		{"unclosed last box falls back", `\boxed{2} and then \boxed{3`, "2", true},
		{"empty box ignored", `\boxed{}`, "", false},
		{"boxedfoo is not a box", `\boxedfoo{3}`, "", false},
		{"final answer colon", "Work...\nFinal answer: 42", "42", true},
		{"final answer is math", `The final answer is $\frac{1}{2}$. I hope it is correct.`, `\frac{1}{2}`, true},
		{"the answer is", "Thus the answer is 12 cm. Done.", "12 cm", true},
		{"the answer is comma", "So the answer is 7, since x is odd.", "7", true},
		{"bold answer", "**Answer:** $x = 5$", "x = 5", true},
		{"final answer heading", "## Final Answer\n\n$$3\\sqrt{2}$$", `3\sqrt{2}`, true},
		{"answer line", "Answer: (1, 2)", "(1, 2)", true},
		{"decimal kept", "The answer is 3.5.", "3.5", true},
		{"dollar sign kept", `The answer is \$18.90.`, `\$18.90`, true},
		{"box wins over line", "Final answer: 4\n\\boxed{5}", "5", true},
		{"fall-back: inline math on the last line", "We add them up.\nAnswer $9$", "9", true},
		{"fall-back: display ending the response", "Squaring both sides:\n\\[ 9 \\]", "9", true},
		{"fall-back: dollar display", "So\n$$9$$", "9", true},
		{"fall-back: parenthesis math", `Hence \( 9 \)`, "9", true},
		{"fall-back: last of several", `We have $a = 3$ and so $b = 4$.`, "4", true},
		{"fall-back: right of the last equals", `Thus $x = 2 + 3 = 5$`, "5", true},
		{"fall-back: equals inside braces kept", `So $\{x = 1\}$`, `\{x = 1\}`, true},
		{"fall-back: multi-line display", "Therefore\n\\[\n\\frac{1}{2}\n\\]\n", `\frac{1}{2}`, true},
		{"fall-back: only the final line", "The area is $12$.\nI hope this helps!", "", false},
		{"fall-back: escaped dollar is not math", `It costs \$5 and \$6.`, "", false},
		{"fall-back: unclosed math", `So $x = 5`, "", false},
		{"doubled backslashes", `So \\boxed{\\dfrac{1}{2}}.`, `\dfrac{1}{2}`, true},
		{"doubled backslashes in a display", `\\[ \\tfrac{1}{2} \\]`, `\tfrac{1}{2}`, true},
		{"matrix line break kept", `\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}`, `\begin{pmatrix} 1 \\ 2 \end{pmatrix}`, true},
		{"nothing", "I am not sure how to solve this.", "", false},
		{"answer word in prose", "To answer this we compute 3+4.", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ExtractAnswer(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ExtractAnswer(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{`\dfrac12`, `\frac{1}{2}`},
		{`\tfrac{3}{4}`, `\frac{3}{4}`},
		{`\frac1b`, `\frac{1}{b}`},
		{`\frac 59`, `\frac{5}{9}`},
		{`\frac{270}7\text{ degrees}`, `\frac{270}{7}`},
		{`\sqrt2`, `\sqrt{2}`},
		{`11\sqrt2`, `11\sqrt{2}`},
		{`\left( 3, \frac{\pi}{2} \right)`, `(3,\frac{\pi}{2})`},
		{`90^\circ`, "90"},
		{`90^{\circ}`, "90"},
		{`50\%`, "50"},
		{`5\text{ cm}`, "5"},
		{`864 \mbox{ inches}^2`, "864"},
		{`5.4 \text{ cents}`, "5.4"},
		{`12 cm`, "12"},
		{`\text{(C)}`, "C"},
		{`(B)`, "B"},
		{`\text{Navin}`, "navin"},
		{`\$18.90`, "18.90"},
		{`\$32,\!348`, "32348"},
		{`11,\! 111,\! 111,\! 100`, "11111111100"},
		{`1,000`, "1000"},
		{`(1,2)`, "(1,2)"},
		{`1,2`, "1,2"},
		{`x = 5`, "5"},
		{`x=5.`, "5"},
		{`\theta = \frac{\pi}{3}`, `\frac{\pi}{3}`},
		{`y = 2x + 3`, "y=2x+3"},
		{`x \in [-2,7]`, "[-2,7]"},
		{`x \in (5, \infty)`, `(5,\infty)`},
		{`x\infty`, `x\infty`},
		{`x \in [1,2] \in A`, `x\in[1,2]\in A`},
		{`5x - 7y + 11z + 4 = 0`, "5x-7y+11z+4=0"},
		{`\cot x`, `\cot x`},
		{`4210_{5}`, "4210_5"},
		{`x^{2}`, "x^2"},
		{`$\boxed{7}$`, "7"},
		{`\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}`, `\begin{pmatrix}1&2\\3&4\end{pmatrix}`},
		{`(-\infty, 0]`, `(-\infty,0]`},
		{`(5, +\infty)`, `(5,\infty)`},
		{`1/2`, `\frac{1}{2}`},
		{`a/b`, `\frac{a}{b}`},
		{`\left\{ 1, 2 \right\}`, `\{1,2\}`},
		{`1 \text{ and } 2`, "1,2"},
		{"  ", ""},
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEquivalent(t *testing.T) {
	tests := []struct {
		pred, ref string
		want      bool
	}{
		{`\frac{1}{2}`, `\frac{1}{2}`, true},
		{`1/2`, `\frac{1}{2}`, true},
		{`0.5`, `\frac{1}{2}`, true},
		{`\dfrac12`, `\frac{1}{2}`, true},
		{`\frac { 1 } { 2 }`, `\frac{1}{2}`, true},
		{`.5`, `\frac12`, true},
		{`0.3333333333`, `\frac{1}{3}`, true},
		{`0.33`, `\frac{1}{3}`, false},
		{`x = 5`, `5`, true},
		{`5\text{ cm}`, `5`, true},
		{`90^\circ`, `90`, true},
		{`90`, `90^\circ`, true},
		{`18.90`, `\$18.90`, true},
		{`18.9`, `\$18.90`, true},
		{`1,000`, `1000`, true},
		{`1000`, `1,000`, true},
		{`-3`, `-3`, true},
		{`-3`, `3`, false},
		{`-\frac{3}{8}`, `-0.375`, true},
		{`\frac{-3}{8}`, `-\frac{3}{8}`, true},
		{`2\sqrt{2}`, `\sqrt{8}`, true},
		{`\sqrt{8}`, `2\sqrt2`, true},
		{`\frac{\sqrt{3}}{3}`, `\frac{1}{\sqrt{3}}`, true},
		{`2\pi`, `6.283185307`, true},
		{`\frac{\pi}{2}`, `\frac12\pi`, true},
		{`1\frac{4}{5}`, `\frac{9}{5}`, true},
		{`137 \frac{1}{2}`, `137.5`, true},
		{`2^{10}`, `1024`, true},
		{`\frac{1}{0}`, `1`, false},
		{`3`, `4`, false},
		{`52_8`, `52`, false},
		{`4210_{5}`, `4210_5`, true},
		{`\text{(C)}`, `C`, true},
		{`(C)`, `\text{(C)}`, true},
		{`C`, `\text{(B)}`, false},
		{`\text{Evelyn}`, `Evelyn`, true},
		{`ellipse`, `\text{ellipse}`, true},
		{`y = 2x+3`, `y = 2x + 3`, true},
		{`6 - 5i`, `6-5i`, true},
		{`[-2, 7]`, `x \in [-2,7]`, true},
		{`[-2,7)`, `[-2,7]`, false},
		{`(3,4]`, `\left(3,4\right]`, true},
		{`(3,4]`, `(3,4)`, false},
		{`\left(\frac{3}{5},\frac{8}{3}\right]`, `(0.6, 8/3]`, true},
		{`(-\infty, 2) \cup (3, \infty)`, `(3,\infty)\cup(-\infty,2)`, true},
		{`(-\infty, 2) \cup (3, \infty)`, `(-\infty, 2]\cup(3,\infty)`, false},
		{`(5, \infty)`, `(5,+\infty)`, true},
		{`(-\infty,0]`, `(-\infty,0)`, false},
		{`(1, 2)`, `(1,2)`, true},
		{`(2, 1)`, `(1,2)`, false},
		{`\left( 3, \frac{\pi}{2} \right)`, `(3, 1.5707963268)`, true},
		{`(1,-16,-4,43)`, `(1, -16, -4, 43)`, true},
		{`(1,-16,-4)`, `(1,-16,-4,43)`, false},
		{`1,-2`, `-2,1`, false},
		{`1, -2`, `1,-2`, true},
		{`\{1\pm\sqrt{5},-2\}`, `\{-2, 1+\sqrt5, 1-\sqrt5\}`, true},
		{`\{1,2\}`, `\{2,1\}`, true},
		{`\{1,2\}`, `\{1,3\}`, false},
		{`3 \pm 2 \sqrt{2}`, `3+2\sqrt{2}, 3-2\sqrt{2}`, true},
		{`3 - 2\sqrt{2}, 3 + 2\sqrt{2}`, `3 \pm 2 \sqrt{2}`, true},
		{`3 + 2\sqrt{2}`, `3 \pm 2 \sqrt{2}`, false},
		{`\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}`, `\begin{pmatrix}0.2\\-3.6\end{pmatrix}`, true},
		{`\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}`, `\begin{bmatrix}-1&0\\0&-1\end{bmatrix}`, true},
		{`\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}`, `\begin{pmatrix}-1&0\\0&1\end{pmatrix}`, false},
		{`\begin{pmatrix} 1 \\ 2 \end{pmatrix}`, `(1,2)`, false},
		{`\infty`, `\infty`, true},
		{`-\infty`, `\infty`, false},
		{`(5)`, `5`, true},
		{`p - q`, `p-q`, true},
		{`p - q`, `q-p`, false},
		{``, ``, false},
		{`5`, ``, false},
		{`5%`, `5`, true},
		{`5 percent`, `5`, true},
		{`1.25`, `\frac{5}{4}`, true},
		{`.0000672`, `6.72\times10^{-5}`, true},
		{`3R^2`, `3r^2`, false},
	}
	for _, tt := range tests {
		if got := Equivalent(tt.pred, tt.ref); got != tt.want {
			t.Errorf("Equivalent(%q, %q) = %v, want %v (normalized %q, %q)", tt.pred, tt.ref, got, tt.want, Normalize(tt.pred), Normalize(tt.ref))
		}
		if got := Equivalent(tt.ref, tt.pred); got != tt.want {
			t.Errorf("Equivalent(%q, %q) = %v, want %v (symmetry)", tt.ref, tt.pred, got, tt.want)
		}
	}
}

func TestEquivalentFor(t *testing.T) {
	const all = "Find all integers n such that f(n) = n. Enter all such integers, separated by commas."
	const one = "Find the point where the lines meet."
	tests := []struct {
		problem, pred, ref string
		want               bool
	}{
		{all, "-2,1", "1,-2", true},
		{all, "x=1, x=-2", "1,-2", true},
		{all, "1, -2, 3", "1,-2", false},
		{all, "1 and -2", "1,-2", true},
		{all, "x = 1 or x = -2", "-2, 1", true},
		{one, "-2,1", "1,-2", false},
		{one, "1,-2", "1,-2", true},
		{"Find the roots of $(x - 3)^3 + (x -7)^3 = (2x - 10)^3.$", "7, 3, 5", "3, 5, 7", true},
		{"Find all solutions. Enter all the solutions, separated by commas.", `3+2\sqrt2, 3-2\sqrt2`, `3 \pm 2 \sqrt{2}`, true},
		{all, "(1,2)", "(2,1)", false}, // a tuple stays ordered
	}
	for _, tt := range tests {
		if got := EquivalentFor(tt.problem, tt.pred, tt.ref); got != tt.want {
			t.Errorf("EquivalentFor(%q, %q, %q) = %v, want %v", tt.problem, tt.pred, tt.ref, got, tt.want)
		}
	}
}

func TestAsksForAll(t *testing.T) {
	tests := []struct {
		problem string
		want    bool
	}{
		{"Enter all the solutions, separated by commas.", true},
		{"Find all real values of x that satisfy the equation.", true},
		{"Find all possible values of k.", true},
		{"Find the roots of p(x).", true},
		{"What is the sum of the digits?", false},
		{"Find the value of x.", false},
	}
	for _, tt := range tests {
		if got := AsksForAll(tt.problem); got != tt.want {
			t.Errorf("AsksForAll(%q) = %v, want %v", tt.problem, got, tt.want)
		}
	}
}
