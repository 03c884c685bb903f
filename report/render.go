package report

import (
	_ "embed"
	"fmt"
	htmltemplate "html/template"
	"io"
	"net/url"
	"strings"
	texttemplate "text/template"
)

// Options adjust a rendered report.
type Options struct {
	// Title heads the report; the default is "TPO report".
	Title string
	// ImagePrefix is put before each chart's file name in Markdown image
	// links (for example "report-" gives "report-curves.svg").
	ImagePrefix string
}

func (o Options) title() string {
	if o.Title == "" {
		return "TPO report"
	}
	return o.Title
}

//go:embed report.html.tmpl
var htmlText string

//go:embed report.md.tmpl
var mdText string

var funcs = map[string]any{
	"num": num, "signed": signed, "pct": pct, "ratio": ratio, "ms": ms, "count": count,
	"depth": depthText, "unparsed": unparsedShare,
	"errtext": func(s string) string { return truncate(s, maxErrorBytes) },
	"example": func(s string) string { return truncate(s, maxExampleBytes) },
}

var (
	htmlTmpl = htmltemplate.Must(htmltemplate.New("report.html").Funcs(funcs).Parse(htmlText))
	mdTmpl   = texttemplate.Must(texttemplate.New("report.md").Funcs(funcs).Funcs(map[string]any{
		"md": mdEscape, "code": mdCode,
	}).Parse(mdText))
)

type page struct {
	Title   string
	Runs    []runView
	Compare any // the comparison chart: inline SVG or an image path
}

type runView struct {
	Summary
	N                 int // 1-based position, for anchors and file names
	CurveSVG, GainSVG any
}

// build lays out the page, placing each chart with place.
func build(sums []Summary, opts Options, place func(Chart) any) (page, []Chart, error) {
	charts, err := Charts(sums)
	if err != nil {
		return page{}, nil, err
	}
	byName := map[string]any{}
	for _, c := range charts {
		byName[c.Name] = place(c)
	}
	p := page{Title: opts.title(), Compare: byName["curves"]}
	for i, s := range sums {
		n := i + 1
		p.Runs = append(p.Runs, runView{Summary: s, N: n,
			CurveSVG: byName[fmt.Sprintf("run%d-curves", n)],
			GainSVG:  byName[fmt.Sprintf("run%d-gains", n)],
		})
	}
	return p, charts, nil
}

// WriteHTML writes a self-contained HTML page on the runs: inline CSS and
// inline SVG charts, no script and no external resource. Every text that
// comes from a run (labels, ids, errors, model output) is escaped.
func WriteHTML(w io.Writer, sums []Summary, opts Options) error {
	p, _, err := build(sums, opts, func(c Chart) any {
		// The SVG is generated here, with every text escaped by vgsvg.
		return htmltemplate.HTML(c.SVG)
	})
	if err != nil {
		return err
	}
	if err := htmlTmpl.Execute(w, p); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}

// WriteMarkdown writes a Markdown report on the runs and returns its
// charts, which the caller saves beside it as ImagePrefix+Name+".svg".
func WriteMarkdown(w io.Writer, sums []Summary, opts Options) ([]Chart, error) {
	p, charts, err := build(sums, opts, func(c Chart) any {
		return (&url.URL{Path: ChartFile(opts.ImagePrefix, c)}).String()
	})
	if err != nil {
		return nil, err
	}
	if err := mdTmpl.Execute(w, p); err != nil {
		return nil, fmt.Errorf("write markdown report: %w", err)
	}
	return charts, nil
}

// ChartFile is the file name of a Markdown report's chart.
func ChartFile(prefix string, c Chart) string { return prefix + c.Name + ".svg" }

// mdEscape makes s safe in a Markdown table cell or heading: one line, no
// HTML, no table or emphasis syntax.
func mdEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '|', '\\', '`', '*', '_', '[', ']', '#':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n', '\r', '\t':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mdCode puts s in a fenced code block whose fence is longer than any run
// of backticks in s, so that s cannot close it.
func mdCode(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", max(3, longest+1))
	return fence + "text\n" + strings.TrimRight(s, "\n") + "\n" + fence
}
