package report

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixtureItems are the prompts of the fixture runs: one holds markup, one
// makes the policy fail at the first update.
var fixtureItems = []tpo.Item{
	{ID: "prime", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "Name a prime number."}}},
	{ID: "poem", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "Write a poem about <script>alert('x')</script> tags."}}},
	{ID: "fails", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "fail me"}}},
	{ID: "gravity", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "Explain gravity briefly."}}},
}

type itemSource struct {
	items []tpo.Item
	i     int
}

func (s *itemSource) Next() (tpo.Input, error) {
	if s.i >= len(s.items) {
		return tpo.Input{}, io.EOF
	}
	s.i++
	return tpo.Input{Item: s.items[s.i-1]}, nil
}

func contains(msgs []tpo.Message, s string) bool {
	for _, m := range msgs {
		if strings.Contains(m.Content, s) {
			return true
		}
	}
	return false
}

// fixtureRun optimizes fixtureItems with deterministic fakes and returns
// the results in input order, with stage times replaced by fixed values
// (the real ones are wall times).
func fixtureRun(t *testing.T, cfg tpo.Config) []tpo.Result {
	t.Helper()
	policy := &tpotest.Policy{
		Respond: func(call int, req tpo.GenerateRequest, i int) string {
			if req.Stage == tpo.StageUpdate && i == 0 && contains(req.Messages, "<script>") {
				return "I will not use a block: <script>alert(1)</script>"
			}
			switch req.Stage {
			case tpo.StageUpdate:
				return fmt.Sprintf("<improved_response>improved %d.%d</improved_response>", call, i)
			case tpo.StageLoss, tpo.StageGradient:
				return fmt.Sprintf("%s %d", req.Stage, call)
			}
			return fmt.Sprintf("answer %d to: %s", i, req.Messages[len(req.Messages)-1].Content)
		},
		Err: func(call int, req tpo.GenerateRequest) error {
			if req.Stage == tpo.StageUpdate && contains(req.Messages, "fail me") {
				return errors.New(`server said <b>no</b> & "quit"`)
			}
			return nil
		},
	}
	// Scores vary with the digits in the text; improved responses score higher.
	reward := &tpotest.Reward{Func: func(_ []tpo.Message, t string) float64 {
		digits := 0
		for _, r := range t {
			if r >= '0' && r <= '9' {
				digits += int(r - '0')
			}
		}
		if strings.HasPrefix(t, "improved") {
			return 4 + float64(digits%7)
		}
		return float64(len(t)%5) + float64(digits%3)/2
	}}
	store := tpotest.NewMemStore()
	opt := &tpo.Optimizer{Policy: policy, Reward: reward, Config: cfg}
	rn := &tpo.Runner{Optimizer: opt, Store: store, Concurrency: 1}
	run, _, err := rn.Run(context.Background(), tpo.Run{Kind: "run", Source: "fixture"}, &itemSource{items: fixtureItems})
	if err != nil {
		t.Fatal(err)
	}
	var out []tpo.Result
	for seq, st := range store.Items(run.ID) {
		if st.Result == nil {
			t.Fatalf("item %q not finished", st.Item.ID)
		}
		r := *st.Result
		for i := range r.Steps {
			s := &r.Steps[i]
			for stage := range s.Millis {
				s.Millis[stage] = int64(10*(seq+1) + 100*s.Step + len(stage))
			}
		}
		out = append(out, r)
	}
	return out
}

func fixtureSummaries(t *testing.T) []Summary {
	t.Helper()
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 2, 2
	a := Summarize("tpo-2-2", fixtureRun(t, cfg))
	a.Source = "run-a"
	cfg.Mode, cfg.Width = tpo.ModeBoN, 4
	b := Summarize("bon-4-0", fixtureRun(t, cfg))
	b.Source = "run-b"
	return []Summary{a, b}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff); got:\n%s", name, got)
	}
}

func TestFixture(t *testing.T) {
	sums := fixtureSummaries(t)
	a, b := sums[0], sums[1]
	if a.Mode != tpo.ModeTPO || a.Width != 2 || a.Depth != 2 || a.Items != 4 || a.Failed != 1 || a.Scored != 3 {
		t.Errorf("tpo run: got mode %s N %d D %d items %d failed %d scored %d", a.Mode, a.Width, a.Depth, a.Items, a.Failed, a.Scored)
	}
	if b.Mode != tpo.ModeBoN || b.Width != 4 || b.Depth != 0 || b.Failed != 0 || b.Gain.Mean != 0 {
		t.Errorf("bon run: got mode %s N %d D %d failed %d gain %v", b.Mode, b.Width, b.Depth, b.Failed, b.Gain.Mean)
	}
	if a.Unparsed == nil || a.Unparsed.ID != "poem" {
		t.Errorf("tpo run: unparsed example %+v, want one from item poem", a.Unparsed)
	}
	if a.Gain.Improved == 0 {
		t.Errorf("tpo run: no item improved; the fixture should show gains")
	}
}

func TestGoldenHTML(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, fixtureSummaries(t), Options{}); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.html", b.Bytes())
}

func TestGoldenMarkdown(t *testing.T) {
	var b bytes.Buffer
	charts, err := WriteMarkdown(&b, fixtureSummaries(t), Options{Title: "Fixture runs", ImagePrefix: "fixture-"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "report.md", b.Bytes())
	var names []string
	for _, c := range charts {
		names = append(names, ChartFile("fixture-", c))
		if !strings.Contains(b.String(), "]("+ChartFile("fixture-", c)+")") {
			t.Errorf("the markdown does not link chart %s", c.Name)
		}
	}
	want := "fixture-curves.svg fixture-run1-curves.svg fixture-run1-gains.svg fixture-run2-curves.svg fixture-run2-gains.svg"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("chart files: got %s, want %s", got, want)
	}
	golden(t, "fixture-run1-curves.svg", charts[1].SVG)
}

// TestJudgeTokens: a run whose reward was a judge says what the judge's
// calls cost besides the policy's; one without says nothing of it.
func TestJudgeTokens(t *testing.T) {
	const note = "The judge's calls (the reward) used 76.0 more tokens per prompt: 300 prompt and 4 completion tokens in all."
	for _, judged := range []bool{true, false} {
		res := handResults()
		if !judged {
			res[0].ScoreUsage = tpo.Usage{Requests: 4}
		}
		sums := []Summary{Summarize("hand", res)}
		var h, m bytes.Buffer
		if err := WriteHTML(&h, sums, Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteMarkdown(&m, sums, Options{}); err != nil {
			t.Fatal(err)
		}
		for format, out := range map[string]string{"html": h.String(), "markdown": m.String()} {
			if got := strings.Contains(out, note); got != judged {
				t.Errorf("judged %v: the %s report says %q: %v", judged, format, note, got)
			}
		}
	}
}

func TestSingleRunHasNoComparison(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, fixtureSummaries(t)[:1], Options{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), `id="compare"`) {
		t.Error("a one-run report has a comparison section")
	}
	if !strings.Contains(b.String(), `id="run1"`) {
		t.Error("the run section is missing")
	}
}

func TestHTMLEscapesModelText(t *testing.T) {
	sums := fixtureSummaries(t)
	sums[0].Label = `<img src=x onerror=alert(1)>`
	var b bytes.Buffer
	if err := WriteHTML(&b, sums, Options{Title: "<script>t</script>"}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"<script", "<img", "<b>no</b>"} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds unescaped %q", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;", // the unparsed update sample
		"&lt;b&gt;no&lt;/b&gt;",                 // the failed item's error
		"&lt;img src=x onerror=alert(1)&gt;",    // the label, in the page and in the SVG legend
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks escaped %q", want)
		}
	}
	for _, ext := range []string{"<link", "@import", "url("} {
		if strings.Contains(out, ext) {
			t.Errorf("output refers to an external resource: %q", ext)
		}
	}
	// The only URLs are the SVG namespace names, which are not fetched.
	rest := strings.NewReplacer(`xmlns="http://www.w3.org/2000/svg"`, "", `xmlns:xlink="http://www.w3.org/1999/xlink"`, "").Replace(out)
	if strings.Contains(rest, "http") {
		t.Error("the page refers to a URL besides the SVG namespaces")
	}
}

func TestMarkdownEscapesModelText(t *testing.T) {
	var b bytes.Buffer
	if _, err := WriteMarkdown(&b, fixtureSummaries(t), Options{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "server said &lt;b&gt;no&lt;/b&gt; &amp; \"quit\"") {
		t.Error("the failed item's error is not escaped")
	}
	// Raw markup may appear only inside fenced code blocks.
	inFence := false
	for i, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if !inFence && strings.Contains(line, "<") {
			t.Errorf("line %d holds raw markup outside a code block: %s", i+1, line)
		}
	}
}

func TestMarkdownHelpers(t *testing.T) {
	if got, want := mdEscape("a|b\n<c> *d* [e](f) `g` #h\\"), `a\|b &lt;c&gt; \*d\* \[e\](f) \`+"`g\\`"+` \#h\\`; got != want {
		t.Errorf("mdEscape: got %q, want %q", got, want)
	}
	if got, want := mdCode("x ``` y\n"), "````text\nx ``` y\n````"; got != want {
		t.Errorf("mdCode: got %q, want %q", got, want)
	}
}

func TestChartsAreDeterministicXML(t *testing.T) {
	sums := fixtureSummaries(t)
	sums[1].Label = `bon <4> & "0"`
	first, err := Charts(sums)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Charts(sums)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range first {
		if !bytes.Equal(c.SVG, second[i].SVG) {
			t.Errorf("chart %s differs between two renderings", c.Name)
		}
		dec := xml.NewDecoder(bytes.NewReader(c.SVG))
		for {
			_, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("chart %s is not well-formed XML: %v", c.Name, err)
				break
			}
		}
		if !bytes.HasPrefix(c.SVG, []byte("<svg ")) {
			t.Errorf("chart %s does not start with <svg: %.40q", c.Name, c.SVG)
		}
	}
	if !bytes.Contains(first[0].SVG, []byte("bon &lt;4&gt; &amp; &#34;0&#34;")) {
		t.Errorf("the legend label is not escaped in the comparison chart")
	}
}

func TestChartsWithoutScores(t *testing.T) {
	s := Summarize("plain", []tpo.Result{{ID: "a", Response: "x"}})
	charts, err := Charts([]Summary{s})
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != 0 {
		t.Errorf("got %d charts for a run without scores, want 0", len(charts))
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, []Summary{s}, Options{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<svg") {
		t.Error("the page holds a chart for a run without scores")
	}
}
