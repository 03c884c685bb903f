package eval

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/internal/shareddata"
)

// mathRow is a row of math500.jsonl with the reference solution.
type mathRow struct {
	MathItem
	Solution string `json:"solution"`
}

func loadMath500(t *testing.T) []mathRow {
	t.Helper()
	f, err := os.Open(shareddata.Path(t, 1, "math500/math500.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadJSONL[mathRow](f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 500 {
		t.Fatalf("read %d rows, want 500", len(rows))
	}
	return rows
}

// rewrite is another surface form of an answer.
type rewrite struct {
	name string
	text string
	// sentence means text is a whole response to extract the answer from.
	sentence bool
}

var (
	plainNumber    = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	simpleFraction = regexp.MustCompile(`^(-?)\\d?frac\s*\{?([0-9]+)\}?\s*\{?([0-9]+)\}?$`)
)

// rewrites returns surface variants of a reference answer that must still
// be equivalent to it.
func rewrites(ans string) []rewrite {
	var out []rewrite
	add := func(name, text string) {
		if text != ans {
			out = append(out, rewrite{name: name, text: text})
		}
	}
	if strings.Contains(ans, `\frac`) && !strings.Contains(ans, `\dfrac`) {
		add("dfrac", strings.ReplaceAll(ans, `\frac`, `\dfrac`))
	}
	if strings.Contains(ans, `\dfrac`) {
		add("frac", strings.ReplaceAll(ans, `\dfrac`, `\frac`))
	}
	add("spaces", addSpaces(ans))
	if strings.Contains(ans, `\left`) {
		r := strings.NewReplacer(`\left`, "", `\right`, "").Replace(ans)
		add("no left/right", r)
	} else if isWrapped(strings.TrimSpace(ans)) && !strings.HasPrefix(ans, `\{`) {
		a := strings.TrimSpace(ans)
		add("left/right", `\left`+a[:1]+" "+a[1:len(a)-1]+` \right`+a[len(a)-1:])
	}
	out = append(out, rewrite{name: "boxed in sentence", text: "Putting it all together, the answer is $\\boxed{" + ans + "}$. I hope this helps.", sentence: true})
	out = append(out, rewrite{name: "final answer line", text: "We are done.\n\n**Final Answer:** $" + ans + "$", sentence: true})
	if plainNumber.MatchString(ans) {
		add("assignment", "x = "+ans)
		add("units", ans+`\text{ units}`)
		add("trailing zero decimal", ans+func() string {
			if strings.Contains(ans, ".") {
				return "0"
			}
			return ".0"
		}())
	}
	if m := simpleFraction.FindStringSubmatch(strings.TrimSpace(ans)); m != nil {
		a, _ := strconv.ParseFloat(m[2], 64)
		b, _ := strconv.ParseFloat(m[3], 64)
		add("decimal", m[1]+strconv.FormatFloat(a/b, 'g', 12, 64))
		add("slash", m[1]+m[2]+"/"+m[3])
	}
	return out
}

// addSpaces puts spaces after commas, around + and =, and before commands.
func addSpaces(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ',' || c == '&':
			b.WriteString(string(c) + " ")
		case c == '+' || c == '=':
			b.WriteString(" " + string(c) + " ")
		case c == '\\' && i+1 < len(s) && isLetter(s[i+1]) && (i == 0 || s[i-1] != '\\'):
			b.WriteString(` \`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestMath500Rewrites(t *testing.T) {
	rows := loadMath500(t)
	checked := 0
	for _, r := range rows {
		if !EquivalentFor(r.Problem, r.Answer, r.Answer) {
			t.Errorf("%s: answer %q is not equivalent to itself", r.ID, r.Answer)
		}
		for _, rw := range rewrites(r.Answer) {
			pred := rw.text
			if rw.sentence {
				got, ok := ExtractAnswer(rw.text)
				if !ok {
					t.Errorf("%s: %s: no answer extracted from %q", r.ID, rw.name, rw.text)
					continue
				}
				pred = got
			}
			checked++
			if !EquivalentFor(r.Problem, pred, r.Answer) {
				t.Errorf("%s: %s: %q is not equivalent to %q (normalized %q vs %q)",
					r.ID, rw.name, pred, r.Answer, Normalize(pred), Normalize(r.Answer))
			}
		}
	}
	t.Logf("checked %d rewrites of %d answers", checked, len(rows))
}

// TestMath500Solutions extracts the boxed answer of every reference solution.
func TestMath500Solutions(t *testing.T) {
	rows := loadMath500(t)
	for _, r := range rows {
		got, ok := ExtractAnswer(r.Solution)
		if !ok {
			t.Errorf("%s: no answer extracted from the reference solution", r.ID)
			continue
		}
		if !EquivalentFor(r.Problem, got, r.Answer) {
			t.Errorf("%s: solution's answer %q is not equivalent to %q", r.ID, got, r.Answer)
		}
	}
}

func TestMath500Neighbours(t *testing.T) {
	rows := loadMath500(t)
	same := 0
	for i, r := range rows {
		for _, j := range []int{i - 1, i + 1} {
			if j < 0 || j >= len(rows) {
				continue
			}
			other := rows[j].Answer
			if !EquivalentFor(r.Problem, other, r.Answer) {
				continue
			}
			if np, nr := Normalize(other), Normalize(r.Answer); np != nr {
				t.Errorf("%s: neighbour answer %q is equivalent to %q but normalizes differently (%q vs %q)",
					r.ID, other, r.Answer, np, nr)
			}
			if j > i {
				same++
				t.Logf("same value: %s %q and %s %q", r.ID, r.Answer, rows[j].ID, other)
			}
		}
	}
	t.Logf("%d neighbouring pairs have the same answer", same)
	if same > 6 {
		t.Errorf("%d neighbouring pairs have the same answer, want at most 6", same)
	}
}
