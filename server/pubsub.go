package server

import (
	"slices"
	"strings"
	"sync"

	"github.com/tpoproject/tpo"
)

// subscriberBuffer is how many events a subscriber may fall behind before
// events are dropped for it.
const subscriberBuffer = 256

// hub fans the events of the optimizations in flight out to subscribers.
// Publishing never blocks: a subscriber whose buffer is full misses events.
type hub struct {
	mu   sync.Mutex
	runs map[string]*flight
}

type flight struct {
	info tpo.LiveRun
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch chan tpo.Event
}

func newHub() *hub { return &hub{runs: map[string]*flight{}} }

// start registers a run as in flight.
func (h *hub) start(info tpo.LiveRun) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs[info.RunID] = &flight{info: info, subs: map[*subscriber]struct{}{}}
}

// end removes a run and closes its subscribers' channels.
func (h *hub) end(runID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.runs[runID]
	if !ok {
		return
	}
	delete(h.runs, runID)
	for s := range f.subs {
		delete(f.subs, s)
		close(s.ch)
	}
}

func (h *hub) publish(runID string, e tpo.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.runs[runID]
	if !ok {
		return
	}
	for s := range f.subs {
		select {
		case s.ch <- e:
		default:
		}
	}
}

// subscribe returns a channel of the run's events from now on, closed when
// the run ends or cancel is called. For a run not in flight the channel is
// closed at once.
func (h *hub) subscribe(runID string) (<-chan tpo.Event, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &subscriber{ch: make(chan tpo.Event, subscriberBuffer)}
	f, ok := h.runs[runID]
	if !ok {
		close(s.ch)
		return s.ch, func() {}
	}
	f.subs[s] = struct{}{}
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if _, ok := f.subs[s]; ok {
				delete(f.subs, s)
				close(s.ch)
			}
		})
	}
	return s.ch, cancel
}

// inFlight lists the runs in flight, oldest first.
func (h *hub) inFlight() []tpo.LiveRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]tpo.LiveRun, 0, len(h.runs))
	for _, f := range h.runs {
		out = append(out, f.info)
	}
	slices.SortFunc(out, func(a, b tpo.LiveRun) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
	return out
}
