package ui

import (
	"net/http"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/report"
)

// runCharts are the SVG charts of a run page; nil when there is nothing to
// draw.
type runCharts struct {
	curves, gains []byte
}

// chartsMaxAge is how long the charts of a run still being written are
// kept: drawing them reads every item of the run, too much to do on every
// step of a large run.
const chartsMaxAge = 15 * time.Second

// charts returns the charts of a run, from the cache while the run has not
// changed, or while the run is not finished and the charts are recent.
func (h *Handler) charts(r *http.Request, row runRow) (runCharts, error) {
	version := row.version()
	fresh := chartsMaxAge
	if row.Final() {
		fresh = 0
	}
	now := time.Now()
	if c, ok := h.sums.get(row.ID, version, fresh, now); ok {
		return c, nil
	}
	b := report.NewBuilder(row.ID)
	err := h.store.Results(r.Context(), row.ID, func(st tpo.ItemState) error {
		if st.Done && st.Result != nil {
			b.Add(*st.Result)
		}
		return nil
	})
	if err != nil {
		return runCharts{}, err
	}
	s := b.Summary()
	var c runCharts
	if c.curves, err = report.CurveChart([]report.Summary{s}); err != nil {
		return runCharts{}, err
	}
	if c.gains, err = report.GainChart(s); err != nil {
		return runCharts{}, err
	}
	h.sums.put(row.ID, version, now, c)
	return c, nil
}

func (h *Handler) handleRunCurves(w http.ResponseWriter, r *http.Request) { h.runChart(w, r, true) }
func (h *Handler) handleRunGains(w http.ResponseWriter, r *http.Request)  { h.runChart(w, r, false) }

func (h *Handler) runChart(w http.ResponseWriter, r *http.Request, curves bool) {
	row, err := h.getRun(r, r.PathValue("run"))
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	c, err := h.charts(r, row)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	svg := c.gains
	if curves {
		svg = c.curves
	}
	writeSVG(w, svg)
}

// handleItemCurves draws the reward by step of one item: the best score
// so far and the mean candidate score of each step.
func (h *Handler) handleItemCurves(w http.ResponseWriter, r *http.Request) {
	st, err := h.store.GetItem(r.Context(), r.PathValue("run"), r.PathValue("item"))
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	res := tpo.Result{ID: st.Item.ID, Steps: st.Steps}
	if st.Result != nil && len(st.Result.Steps) > 0 {
		res.Steps = st.Result.Steps
	}
	svg, err := report.CurveChart([]report.Summary{report.Summarize(st.Item.ID, []tpo.Result{res})})
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	writeSVG(w, svg)
}

// emptyChart stands in for a chart with nothing to draw yet.
const emptyChart = `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="60" viewBox="0 0 480 60">` +
	`<text x="240" y="34" text-anchor="middle" font-family="sans-serif" font-size="13" fill="#777">no scores yet</text></svg>`

// writeSVG serves a chart image. Charts are drawn from numbers and fixed
// labels; the policy forbids scripts in them all the same.
func writeSVG(w http.ResponseWriter, svg []byte) {
	if svg == nil {
		svg = []byte(emptyChart)
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", svgPolicy)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Write(svg)
}
