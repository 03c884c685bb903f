package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart is one SVG chart of a report.
type Chart struct {
	// Name is a short file-name-safe name, unique within a report.
	Name  string
	Title string
	SVG   []byte
}

// Chart sizes and fonts are fixed so that output is reproducible.
const (
	chartWidth  vg.Length = 480
	chartHeight vg.Length = 280
	fontSize    vg.Length = 10
	titleSize   vg.Length = 12
)

var chartFont = font.Font{Typeface: "Liberation", Variant: "Sans"}

// palette is the Okabe–Ito colour-blind-safe palette.
var palette = []color.RGBA{
	{0x00, 0x72, 0xB2, 0xff}, // blue
	{0xD5, 0x5E, 0x00, 0xff}, // vermillion
	{0x00, 0x9E, 0x73, 0xff}, // bluish green
	{0xCC, 0x79, 0xA7, 0xff}, // reddish purple
	{0xE6, 0x9F, 0x00, 0xff}, // orange
	{0x56, 0xB4, 0xE9, 0xff}, // sky blue
	{0x00, 0x00, 0x00, 0xff}, // black
	{0xF0, 0xE4, 0x42, 0xff}, // yellow
}

func colorOf(i int) color.Color { return palette[i%len(palette)] }

// newPlot returns a plot with the report's fonts.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(chartFont, titleSize)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(chartFont, fontSize)
		a.Tick.Label.Font = font.From(chartFont, fontSize)
	}
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	p.Legend.TextStyle.Font = font.From(chartFont, fontSize)
	p.Legend.ThumbnailWidth = vg.Points(20)
	p.Add(plotter.NewGrid())
	return p
}

// render draws p into SVG, cleaned for inlining into HTML: no XML prolog
// or generator comment, and a font-family list with fallbacks for readers
// without the Liberation fonts.
func render(p *plot.Plot) ([]byte, error) {
	c := vgsvg.New(chartWidth, chartHeight)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	out := b.Bytes()
	if i := bytes.Index(out, []byte("<svg")); i >= 0 {
		out = out[i:]
	}
	out = bytes.ReplaceAll(out, []byte("font-family:Liberation Sans;"),
		[]byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;"))
	return out, nil
}

// integerTicks labels every step (or every k-th one for many steps).
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	first, last := int(math.Ceil(lo)), int(math.Floor(hi))
	every := max(1, (last-first)/10+1)
	var ticks []plot.Tick
	for i := first; i <= last; i++ {
		t := plot.Tick{Value: float64(i)}
		if (i-first)%every == 0 {
			t.Label = strconv.Itoa(i)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// CurveChart draws the reward curves of the runs: the mean best-so-far
// score (solid) and the mean candidate score (dashed) at each step. It
// returns nil for runs without curves.
func CurveChart(sums []Summary) ([]byte, error) {
	p, err := curvePlot(sums)
	if p == nil || err != nil {
		return nil, err
	}
	return render(p)
}

func curvePlot(sums []Summary) (*plot.Plot, error) {
	p := newPlot("Reward by step", "step", "score")
	maxStep, drawn := 0, false
	for i, s := range sums {
		if len(s.Curve) == 0 {
			continue
		}
		drawn = true
		maxStep = max(maxStep, len(s.Curve)-1)
		var best, mean plotter.XYs
		for _, pt := range s.Curve {
			best = append(best, plotter.XY{X: float64(pt.Step), Y: pt.BestSoFar})
			if pt.Sampled > 0 {
				mean = append(mean, plotter.XY{X: float64(pt.Step), Y: pt.MeanScore})
			}
		}
		name := s.Label + ": "
		if len(sums) == 1 {
			name = ""
		}
		if err := addLine(p, best, colorOf(i), nil, draw.CircleGlyph{}, name+"best so far"); err != nil {
			return nil, err
		}
		if len(mean) > 0 {
			dash := []vg.Length{vg.Points(4), vg.Points(3)}
			if err := addLine(p, mean, colorOf(i), dash, draw.TriangleGlyph{}, name+"mean candidate"); err != nil {
				return nil, err
			}
		}
	}
	if !drawn {
		return nil, nil
	}
	p.X.Min, p.X.Max = -0.25, float64(maxStep)+0.25
	p.X.Tick.Marker = integerTicks{}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), vg.Points(-4)
	return p, nil
}

func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashes []vg.Length, g draw.GlyphDrawer, name string) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("chart %q: %w", name, err)
	}
	l.Color, l.Width, l.Dashes = c, vg.Points(1.5), dashes
	pts.Color, pts.Shape, pts.Radius = c, g, vg.Points(2.5)
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}

// GainChart draws the histogram of a run's gains; nil when it has none.
func GainChart(s Summary) ([]byte, error) {
	if len(s.Gain.Bins) == 0 {
		return nil, nil
	}
	return render(gainPlot(s))
}

func gainPlot(s Summary) *plot.Plot {
	p := newPlot("Gain over the best initial sample", "gain", "items")
	h := &plotter.Histogram{FillColor: colorOf(0)}
	h.LineStyle = draw.LineStyle{Color: color.White, Width: vg.Points(0.5)}
	bins := s.Gain.Bins
	for _, b := range bins {
		lo, hi := b.Lo, b.Hi
		if lo == hi { // every gain equal: a narrow bar in a wider range
			w := 0.1 * max(1, math.Abs(lo))
			lo, hi = lo-w, hi+w
			p.X.Min, p.X.Max = lo-4*w, hi+4*w
		}
		h.Bins = append(h.Bins, plotter.HistogramBin{Min: lo, Max: hi, Weight: float64(b.Count)})
		h.Width = hi - lo
	}
	p.Add(h)
	if lo, hi := bins[0].Lo, bins[len(bins)-1].Hi; lo < hi {
		pad := 0.05 * (hi - lo)
		p.X.Min, p.X.Max = lo-pad, hi+pad
	}
	p.Y.Min = 0
	p.Y.Tick.Marker = integerTicks{}
	return p
}

// Charts draws every chart of a report on sums: the curves of all runs
// together when there are several, then each run's curves and gains.
func Charts(sums []Summary) ([]Chart, error) {
	var out []Chart
	add := func(name, title string, svg []byte, err error) error {
		if err != nil {
			return err
		}
		if svg != nil {
			out = append(out, Chart{Name: name, Title: title, SVG: svg})
		}
		return nil
	}
	if len(sums) > 1 {
		svg, err := CurveChart(sums)
		if err := add("curves", "Reward by step, all runs", svg, err); err != nil {
			return nil, err
		}
	}
	for i, s := range sums {
		svg, err := CurveChart(sums[i : i+1])
		if err := add(fmt.Sprintf("run%d-curves", i+1), "Reward by step: "+s.Label, svg, err); err != nil {
			return nil, err
		}
		svg, err = GainChart(s)
		if err := add(fmt.Sprintf("run%d-gains", i+1), "Gains: "+s.Label, svg, err); err != nil {
			return nil, err
		}
	}
	return out, nil
}
