package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"

	"github.com/tpoproject/tpo"
)

// logSink is where log records go: stderr, around the progress bar while
// one is shown, so that a log line never leaves a broken bar.
type logSink struct {
	w      io.Writer
	mu     sync.Mutex
	around func(write func()) // set while a progress bar is shown
}

func (s *logSink) Write(p []byte) (n int, err error) {
	s.mu.Lock()
	around := s.around
	s.mu.Unlock()
	if around == nil {
		return s.w.Write(p)
	}
	around(func() { n, err = s.w.Write(p) })
	return n, err
}

// setAround makes every later write go through around (nil: straight to
// the writer).
func (s *logSink) setAround(around func(write func())) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.around = around
}

// progress follows a dataset run: it shows items done on stderr when it is
// a terminal, and collects the errors of failed items.
type progress struct {
	mu      sync.Mutex
	w       io.Writer // where the bar is drawn
	bar     *progressbar.ProgressBar
	logs    *logSink
	n       int // items reported by the runner
	all     int // items finished, by this process or others sharing the run
	sumBest float64
	scored  int
	fails   failureTally
}

// newProgress starts following a run of total items (-1: unknown). data
// is the dataset path, whose locations are left out of failure reasons.
func newProgress(env *environ, mode string, total int, data string) *progress {
	p := &progress{w: env.stderr, logs: env.logs, fails: failureTally{data: data}}
	show := mode == "on" || (mode == "auto" && env.stderrIsTerminal())
	if !show {
		return p
	}
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(env.stderr),
		progressbar.OptionSetDescription("optimizing"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("items"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(20),
		// No background redraws: every drawing happens under p.mu, so
		// that log lines can clear the bar first.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionClearOnFinish(),
	)
	p.mu.Lock()
	_ = p.bar.RenderBlank()
	p.mu.Unlock()
	if p.logs != nil {
		p.logs.setAround(p.around)
	}
	return p
}

// around runs write, which writes a log line, with the bar's line cleared
// first and the bar drawn again after.
func (p *progress) around(write func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil || p.bar.IsFinished() {
		write()
		return
	}
	_ = p.bar.Clear()
	write()
	io.WriteString(p.w, p.bar.String())
}

func (p *progress) item(st tpo.ItemState, skipped bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.all = max(p.all, p.n)
	if st.Result != nil && st.Result.Error != "" && !skipped {
		p.fails.add(st.Seq, st.Item.ID, st.Result.Error)
	}
	if st.Result != nil && st.Result.Error == "" && len(st.Result.Steps) > 0 {
		p.sumBest += st.Result.Score
		p.scored++
	}
	if p.bar == nil {
		return
	}
	if p.scored > 0 {
		p.bar.Describe(fmt.Sprintf("mean best %.3g", p.sumBest/float64(p.scored)))
	}
	_ = p.bar.Set(p.all)
}

// finished moves the bar to n items finished, counting those of the other
// processes sharing the run.
func (p *progress) finished(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil || n <= p.all {
		return
	}
	if total := p.bar.GetMax(); total >= 0 {
		n = min(n, total)
	}
	p.all = n
	_ = p.bar.Set(p.all)
}

// say writes a line of its own on stderr, above the bar.
func (p *progress) say(msg string) {
	p.around(func() { fmt.Fprintln(p.w, msg) })
}

// finish removes the bar, whether the run ended or was interrupted, and
// lets log lines go straight to stderr again.
func (p *progress) finish() {
	if p.logs != nil {
		p.logs.setAround(nil)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil && !p.bar.IsFinished() {
		// Blank the bar's line, and the "^C" a terminal echoes after it
		// when the run is interrupted.
		width := utf8.RuneCountInString(strings.TrimPrefix(p.bar.String(), "\r")) + len("^C")
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", width))
	}
	p.bar = nil
}

// failures describes the errors of the items that failed under headline;
// see failureTally.describe.
func (p *progress) failures(headline, hint string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fails.describe(headline, hint, maxReasons)
}
