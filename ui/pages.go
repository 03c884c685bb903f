package ui

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tpoproject/tpo"
)

// Page sizes of the listings.
const (
	runsPerPage  = 50
	itemsPerPage = 50
	slowestItems = 5
	failedItems  = 10
)

// pageTemplate is one page's template set: the layout, the shared
// fragments and the page.
type pageTemplate struct{ *template.Template }

func (h *Handler) funcs() template.FuncMap {
	return template.FuncMap{
		"prefix":    func() string { return h.prefix },
		"static":    func(name string) string { return h.static[name] },
		"num":       num,
		"signed":    signed,
		"optNum":    optNum,
		"optSigned": optSigned,
		"count":     count,
		"plural":    plural,
		"when":      when,
		"iso":       isoTime,
		"dur":       dur,
		"millis":    millis,
		"pct":       pct,
		"pollMs":    func() int64 { return h.poll.Milliseconds() },
		"add":       func(a, b int) int { return a + b },
		"itemURL":   h.itemURL,
		"runURL":    h.runURL,
		"roleClass": func(role string) string {
			switch role {
			case tpo.RoleSystem, tpo.RoleUser, tpo.RoleAssistant:
				return role
			}
			return "other"
		},
	}
}

// parseTemplates parses every page with the layout and the fragments.
func (h *Handler) parseTemplates() error {
	base, err := template.New("base").Funcs(h.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/fragments.html")
	if err != nil {
		return fmt.Errorf("ui: templates: %w", err)
	}
	h.pages = map[string]*pageTemplate{}
	names, err := fs.Glob(templateFS, "templates/page_*.html")
	if err != nil {
		return fmt.Errorf("ui: templates: %w", err)
	}
	for _, n := range names {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return fmt.Errorf("ui: templates: %w", err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/page_"), ".html")
		h.pages[name] = &pageTemplate{t}
	}
	// Fragments render alone from the base set.
	h.pages[""] = &pageTemplate{base}
	return nil
}

// render writes a page (or, with page "", the fragment named block).
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, page, block string, data any) {
	var b bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&b, block, data); err != nil {
		h.log.Error("ui: rendering failed", "page", page, "block", block, "path", r.URL.Path, "err", err)
		http.Error(w, "500 internal error: rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (h *Handler) runURL(runID string) string { return h.prefix + "/runs/" + url.PathEscape(runID) }

func (h *Handler) itemURL(runID, itemID string) string {
	return h.runURL(runID) + "/items/" + url.PathEscape(itemID)
}

// page is what every page has.
type page struct {
	Title  string
	Crumbs []crumb
}

type crumb struct{ Text, URL string }

type errorPage struct {
	page
	Status  int
	Message string
}

func (h *Handler) handleNotFound(w http.ResponseWriter, r *http.Request) {
	h.fail(w, r, http.StatusNotFound, "There is no page at this address.")
}

// fail renders an error page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", "layout", errorPage{page: page{Title: http.StatusText(status)}, Status: status, Message: msg})
}

// storeError renders the error page for a store error.
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, tpo.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "Not found: "+err.Error())
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.Error("ui: reading the store failed", "path", r.URL.Path, "err", err)
	h.fail(w, r, http.StatusInternalServerError, "Reading the run store failed.")
}

// inFlight returns the runs in flight by id.
func (h *Handler) inFlight() map[string]tpo.LiveRun {
	if h.live == nil {
		return nil
	}
	m := map[string]tpo.LiveRun{}
	for _, f := range h.live.InFlight() {
		m[f.RunID] = f
	}
	return m
}

func (h *Handler) row(s tpo.RunSummary, flying map[string]tpo.LiveRun) runRow {
	_, live := flying[s.ID]
	return runRow{RunSummary: s, Settings: parseSettings(s.Config), URL: h.runURL(s.ID), InFlight: live}
}

// getRun reads a run as a row.
func (h *Handler) getRun(r *http.Request, runID string) (runRow, error) {
	s, err := h.store.GetRun(r.Context(), runID)
	if err != nil {
		return runRow{}, err
	}
	return h.row(s, h.inFlight()), nil
}

// option is a choice of a <select>.
type option struct {
	Value, Label string
	Selected     bool
}

func options(cur string, pairs ...string) []option {
	var out []option
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, option{pairs[i], pairs[i+1], pairs[i] == cur})
	}
	return out
}

// pager links the pages of a listing.
type pager struct {
	Page, Pages int
	Prev, Next  string
}

func newPager(u *url.URL, pageNo, total, per int) pager {
	p := pager{Page: pageNo, Pages: max(1, (total+per-1)/per)}
	link := func(n int) string {
		q := u.Query()
		q.Set("page", strconv.Itoa(n))
		return u.Path + "?" + q.Encode()
	}
	if pageNo > 1 {
		p.Prev = link(pageNo - 1)
	}
	if pageNo < p.Pages {
		p.Next = link(pageNo + 1)
	}
	return p
}

// maxPage is the highest page number of a listing asked for: any page
// beyond the last is empty, and offsets beyond int overflow.
const maxPage = 1 << 30

// pageParam returns the page number of r's query (default 1).
func pageParam(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || n < 1 {
		return 1
	}
	return min(n, maxPage)
}

// textParam returns the trimmed free-text query parameter name of r, or
// answers 400 and returns false when it is longer than MaxQueryLength.
func (h *Handler) textParam(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v := strings.TrimSpace(r.URL.Query().Get(name))
	if n := utf8.RuneCountInString(v); n > MaxQueryLength {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("The query parameter %s is %d characters long; at most %d are allowed.", name, n, MaxQueryLength))
		return "", false
	}
	return v, true
}

// ---- runs ----

type flightView struct {
	tpo.LiveRun
	URL    string
	Prompt string
}

type runsPage struct {
	page
	Runs     []runRow
	InFlight []flightView
	HasLive  bool
	Kind     string
	Query    string
	Sort     string
	Kinds    []option
	Sorts    []option
	Deleted  string
	Total    int // runs in the store
	Matched  int // runs that pass the filter
	Pager    pager
}

// runSorts are the orders of the runs page: key, label.
var runSorts = []string{
	"-created", "newest first", "created", "oldest first",
	"-items", "most items", "-score", "best mean score", "score", "worst mean score",
	"-gain", "best mean gain", "gain", "worst mean gain", "-tokens", "most tokens",
	"-failed", "most failures", "source", "source",
}

func runLess(key string) func(a, b runRow) int {
	desc := strings.HasPrefix(key, "-")
	name := strings.TrimPrefix(key, "-")
	opt := func(v *float64) (float64, bool) {
		if v == nil {
			return 0, false
		}
		return *v, true
	}
	byOpt := func(a, b *float64) int {
		// Runs without the value come last either way.
		va, oka := opt(a)
		vb, okb := opt(b)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return 2
		case !okb:
			return -2
		}
		return cmp.Compare(va, vb)
	}
	return func(a, b runRow) int {
		var c int
		switch name {
		case "items":
			c = cmp.Compare(a.Total(), b.Total())
		case "score":
			c = byOpt(a.MeanScore, b.MeanScore)
		case "gain":
			c = byOpt(a.MeanGain, b.MeanGain)
		case "tokens":
			c = cmp.Compare(a.Tokens(), b.Tokens())
		case "failed":
			c = cmp.Compare(a.Failed, b.Failed)
		case "source":
			c = strings.Compare(a.Source, b.Source)
		default:
			c = a.Created.Compare(b.Created)
		}
		if c == 2 || c == -2 { // missing values: not reversed
			return c
		}
		if desc {
			c = -c
		}
		if c == 0 {
			c = strings.Compare(a.ID, b.ID)
		}
		return c
	}
}

// isKey reports whether k is a key of pairs (key, label, key, label...).
func isKey(pairs []string, k string) bool {
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i] == k {
			return true
		}
	}
	return false
}

// matchRun reports whether the run's id, source, mode or models contain q.
func matchRun(r runRow, q string) bool {
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	for _, s := range []string{r.ID, r.Source, r.Kind, string(r.Settings.Mode), r.Settings.Backends()} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	return false
}

func (h *Handler) handleRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, sortKey := q.Get("kind"), q.Get("sort")
	text, ok := h.textParam(w, r, "q")
	if !ok {
		return
	}
	deleted, ok := h.textParam(w, r, "deleted")
	if !ok {
		return
	}
	if kind != "run" && kind != "serve" {
		kind = ""
	}
	if !isKey(runSorts, sortKey) {
		sortKey = "-created"
	}
	all, err := h.store.ListRuns(r.Context())
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	flying := h.inFlight()
	p := runsPage{page: page{Title: "Runs"}, Kind: kind, Query: text, Sort: sortKey, Total: len(all), HasLive: h.live != nil,
		Deleted: deleted,
		Kinds:   options(kind, "", "all kinds", "run", "tpo run", "serve", "tpo serve")}
	for i := 0; i+1 < len(runSorts); i += 2 {
		p.Sorts = append(p.Sorts, option{runSorts[i], runSorts[i+1], runSorts[i] == sortKey})
	}
	var rows []runRow
	for _, s := range all {
		row := h.row(s, flying)
		if (kind == "" || row.Kind == kind) && matchRun(row, text) {
			rows = append(rows, row)
		}
	}
	slices.SortStableFunc(rows, runLess(sortKey))
	p.Matched = len(rows)
	n := pageParam(r)
	p.Pager = newPager(r.URL, n, len(rows), runsPerPage)
	lo := min(len(rows), (n-1)*runsPerPage)
	p.Runs = rows[lo:min(len(rows), lo+runsPerPage)]
	if h.live != nil {
		for _, f := range h.live.InFlight() {
			p.InFlight = append(p.InFlight, flightView{LiveRun: f, URL: h.prefix + "/live/" + url.PathEscape(f.RunID),
				Prompt: truncate(f.Prompt, 300)})
		}
	}
	h.render(w, r, http.StatusOK, "runs", "layout", p)
}

// ---- one run ----

type itemRow struct {
	tpo.ItemSummary
	URL string
}

type itemsView struct {
	Action   string
	Rows     []itemRow
	Total    int
	Query    string
	Status   string
	Order    string
	Statuses []option
	Orders   []option
	Pager    pager
}

type progressView struct {
	Run       runRow
	CurvesURL string
	GainsURL  string
}

type runPage struct {
	page
	Run         runRow
	Config      string
	Progress    progressView
	ProgressURL string
	EventsURL   string
	Slowest     []itemRow
	Failed      []itemRow
	Items       itemsView
	DeleteURL   string
}

func (h *Handler) progress(row runRow) progressView {
	v := "?v=" + url.QueryEscape(row.version())
	return progressView{Run: row, CurvesURL: row.URL + "/curves.svg" + v, GainsURL: row.URL + "/gains.svg" + v}
}

func (h *Handler) itemRows(runID string, items []tpo.ItemSummary) []itemRow {
	out := make([]itemRow, len(items))
	for i, it := range items {
		out[i] = itemRow{ItemSummary: it, URL: h.itemURL(runID, it.ID)}
	}
	return out
}

var itemOrders = []string{
	"seq", "input order", "-score", "best score", "score", "worst score", "-gain", "best gain", "gain", "worst gain",
	"-duration", "slowest", "-tokens", "most tokens", "id", "id",
}

func (h *Handler) handleRun(w http.ResponseWriter, r *http.Request) {
	runID := r.PathValue("run")
	row, err := h.getRun(r, runID)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	status, order := q.Get("status"), q.Get("order")
	text, ok := h.textParam(w, r, "q")
	if !ok {
		return
	}
	switch tpo.ItemStatus(status) {
	case tpo.StatusDone, tpo.StatusFailed, tpo.StatusPending:
	default:
		status = ""
	}
	if !isKey(itemOrders, order) {
		order = "seq"
	}
	n := pageParam(r)
	items, total, err := h.store.ListItems(ctx, runID, tpo.ItemFilter{Query: text, Status: tpo.ItemStatus(status),
		Order: tpo.ItemOrder(order), Limit: itemsPerPage, Offset: (n - 1) * itemsPerPage})
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	p := runPage{
		page:        page{Title: "Run " + runID, Crumbs: []crumb{{"run " + runID, row.URL}}},
		Run:         row,
		Config:      prettyJSON(row.Config),
		Progress:    h.progress(row),
		ProgressURL: row.URL + "/progress",
		DeleteURL:   row.URL + "/delete",
		Items: itemsView{
			Action: row.URL, Rows: h.itemRows(runID, items), Total: total, Query: text, Status: status, Order: order,
			Statuses: options(status, "", "all", "done", "done", "failed", "failed", "pending", "pending"),
			Pager:    newPager(r.URL, n, total, itemsPerPage),
		},
	}
	for i := 0; i+1 < len(itemOrders); i += 2 {
		p.Items.Orders = append(p.Items.Orders, option{itemOrders[i], itemOrders[i+1], itemOrders[i] == order})
	}
	if row.InFlight {
		p.EventsURL = row.URL + "/events"
	}
	if row.Items > 1 {
		slow, _, err := h.store.ListItems(ctx, runID, tpo.ItemFilter{Order: "-duration", Limit: slowestItems})
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		p.Slowest = h.itemRows(runID, slow)
	}
	if row.Failed > 0 {
		failed, _, err := h.store.ListItems(ctx, runID, tpo.ItemFilter{Status: tpo.StatusFailed, Limit: failedItems})
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		p.Failed = h.itemRows(runID, failed)
	}
	h.render(w, r, http.StatusOK, "run", "layout", p)
}

// handleRunProgress serves the progress fragment of a run page, for polls.
func (h *Handler) handleRunProgress(w http.ResponseWriter, r *http.Request) {
	row, err := h.getRun(r, r.PathValue("run"))
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "", "run-progress", h.progress(row))
}

// ---- one item ----

// itemBody is the part of the item page that changes while the item is
// optimized: the answer, the chart and the timeline.
type itemBody struct {
	Run        runRow
	ID         string
	Done       bool
	Error      string
	Answer     string
	HaveAnswer bool
	Score      float64
	Initial    float64
	HaveInit   bool
	Gain       float64
	BestAnchor string
	BestLabel  string
	Usage      tpo.Usage
	ScoreCalls int
	Millis     int64
	// Stopped says why a finished optimization stopped ("" while running
	// or failed, or for results stored before stop reasons were).
	Stopped  string
	Messages []tpo.Message
	Steps    []stepView
	ChartURL string
	// Final is true when nothing more will change.
	Final bool
}

type itemPage struct {
	page
	Run       runRow
	Body      itemBody
	BodyURL   string
	EventsURL string
}

// body builds the changing part of an item page from its stored state and
// a step in progress known from live events.
func (h *Handler) body(row runRow, st tpo.ItemState, pending *stepView) itemBody {
	b := itemBody{Run: row, ID: st.Item.ID, Done: st.Done, Messages: st.Item.Messages}
	var best *tpo.Ref
	steps := st.Steps
	if res := st.Result; st.Done && res != nil {
		b.Error = res.Error
		if len(res.Steps) > 0 {
			steps = res.Steps
		}
		b.Usage, b.ScoreCalls = res.Usage, res.ScoreCalls
		if res.Error == "" {
			b.Stopped = stoppedText(res.StopReason)
		}
		if _, _, ok := bestSoFar(steps); ok {
			b.Answer, b.HaveAnswer, b.Score = res.Response, true, res.Score
			best = &res.Best
			b.Initial, b.HaveInit, b.Gain = res.InitialBest, true, res.Gain()
		}
	} else {
		for _, s := range steps {
			b.Usage.Add(s.Usage)
		}
		if c, ref, ok := bestSoFar(steps); ok {
			b.Answer, b.HaveAnswer, b.Score = c.Text, true, c.Score
			best = &ref
		}
	}
	if b.HaveAnswer && best != nil {
		b.BestAnchor = anchor(*best)
		b.BestLabel = fmt.Sprintf("step %d #%d", best.Step, best.Index)
	}
	if !b.HaveInit && len(steps) > 0 && steps[0].Step == 0 && len(steps[0].Candidates) > 0 {
		c, _, _ := bestSoFar(steps[:1])
		b.Initial, b.HaveInit = c.Score, true
		b.Gain = b.Score - b.Initial
	}
	for _, s := range steps {
		for _, ms := range s.Millis {
			b.Millis += ms
		}
	}
	var final *tpo.Ref
	if st.Done {
		final = best
	}
	b.Steps = timeline(steps, final, pending)
	b.Final = st.Done && !row.InFlight
	v := fmt.Sprintf("%d-%t", len(steps), st.Done)
	if pending != nil {
		v += fmt.Sprintf("-p%d.%d", pending.Step, len(pending.Candidates))
	}
	if len(steps) > 0 && len(steps[0].Candidates) > 0 {
		b.ChartURL = h.itemURL(row.ID, st.Item.ID) + "/curves.svg?v=" + url.QueryEscape(v)
	}
	return b
}

func (h *Handler) handleItem(w http.ResponseWriter, r *http.Request) {
	runID, itemID := r.PathValue("run"), r.PathValue("item")
	row, err := h.getRun(r, runID)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	st, err := h.store.GetItem(r.Context(), runID, itemID)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	itemURL := h.itemURL(runID, itemID)
	p := itemPage{
		page: page{Title: "Item " + itemID, Crumbs: []crumb{{"run " + runID, row.URL}, {"item " + itemID, itemURL}}},
		Run:  row, Body: h.body(row, st, nil),
		BodyURL: itemURL + "/body",
	}
	if row.InFlight && !st.Done {
		p.EventsURL = itemURL + "/events"
	}
	h.render(w, r, http.StatusOK, "item", "layout", p)
}

// handleItemBody serves the changing part of an item page, for polls.
func (h *Handler) handleItemBody(w http.ResponseWriter, r *http.Request) {
	runID, itemID := r.PathValue("run"), r.PathValue("item")
	row, err := h.getRun(r, runID)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	st, err := h.store.GetItem(r.Context(), runID, itemID)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "", "item-body", h.body(row, st, nil))
}

// handleLive sends the browser to the page of an optimization in flight:
// the item page when the run has one item, the run page otherwise.
func (h *Handler) handleLive(w http.ResponseWriter, r *http.Request) {
	runID := r.PathValue("run")
	items, total, err := h.store.ListItems(r.Context(), runID, tpo.ItemFilter{Limit: 1})
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	to := h.runURL(runID)
	if total == 1 {
		to = h.itemURL(runID, items[0].ID)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// ---- deleting a run ----

type confirmPage struct {
	page
	Run    runRow
	Action string
	Token  string
}

func (h *Handler) handleDeleteConfirm(w http.ResponseWriter, r *http.Request) {
	runID := r.PathValue("run")
	row, err := h.getRun(r, runID)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "confirm", "layout", confirmPage{
		page: page{Title: "Delete run " + runID, Crumbs: []crumb{{"run " + runID, row.URL}, {"delete", row.URL + "/delete"}}},
		Run:  row, Action: row.URL + "/delete", Token: h.deleteToken(runID),
	})
}

func (h *Handler) handleDelete(w http.ResponseWriter, r *http.Request) {
	runID := r.PathValue("run")
	if err := h.cop.Check(r); err != nil {
		h.fail(w, r, http.StatusForbidden, "Refused: the request did not come from this site's own page.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil || !h.validDeleteToken(runID, r.PostForm.Get("token")) {
		h.fail(w, r, http.StatusForbidden, "Refused: the confirmation token is missing or wrong. Open the run's delete page again.")
		return
	}
	if _, live := h.inFlight()[runID]; live {
		h.fail(w, r, http.StatusConflict, "This run is being optimized now; delete it when it has finished.")
		return
	}
	if err := h.store.DeleteRun(r.Context(), runID); err != nil {
		h.storeError(w, r, err)
		return
	}
	h.sums.drop(runID)
	h.log.Info("ui: run deleted", "run", runID, "remote", r.RemoteAddr)
	http.Redirect(w, r, h.prefix+"/?deleted="+url.QueryEscape(runID), http.StatusSeeOther)
}

// stoppedText says why an optimization stopped, for the item page.
func stoppedText(why tpo.StopReason) string {
	switch why {
	case tpo.StopDepth:
		return "every round ran"
	case tpo.StopPatience:
		return "stopped early: the best score stopped improving"
	case tpo.StopTarget:
		return "stopped early: the best score reached the target"
	case tpo.StopBudget:
		return "stopped early: another round would exceed the token budget"
	case tpo.StopDeadline:
		return "stopped at the deadline: the best answer found in time"
	}
	return ""
}
