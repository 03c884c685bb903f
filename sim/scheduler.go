package sim

import (
	"errors"
	"sync"
	"time"
)

// errClosed is the error of jobs still running when the server closes.
var errClosed = errors.New("simulated server closed")

// latency is the step-time model, in simulated seconds.
type latency struct {
	base, perSeq, prefillPerToken float64
}

// step returns the duration of a decode step with active sequences that
// prefills prefill prompt tokens.
func (l latency) step(active, prefill int) float64 {
	return l.base + l.perSeq*float64(active) + l.prefillPerToken*float64(prefill)
}

// job is one chat request in the scheduler: n sequences sharing a prompt.
type job struct {
	lengths      []int // tokens to generate, per sequence
	promptTokens int

	// Guarded by scheduler.mu.
	admitted, finished int
	produced           []int // tokens decoded so far, per sequence
	canceled           bool
	arrived, started   float64 // simulated clock
	ended              float64
	err                error

	done     chan struct{} // closed when all sequences finished or the job failed
	progress chan struct{} // poked (buffered, never closed) after a step that decoded one of its tokens
}

// QueueSeconds is the simulated time the job waited before its first
// sequence was admitted; Seconds the time from arrival to its end. Read them
// only after done is closed.
func (j *job) QueueSeconds() float64 { return j.started - j.arrived }
func (j *job) Seconds() float64      { return j.ended - j.arrived }

// seq is an active sequence.
type seq struct {
	job       *job
	idx       int // in job.lengths
	remaining int
}

// scheduler simulates a continuous-batching server: a FIFO queue of
// sequences, at most slots of them active, one goroutine stepping.
type scheduler struct {
	slots int
	lat   latency
	scale float64 // wall seconds per simulated second

	wake   chan struct{} // buffered: a job arrived or was canceled
	quit   chan struct{}
	exited chan struct{} // closed when run returns

	mu      sync.Mutex
	closed  bool
	queue   []*job // jobs with sequences not yet admitted, in arrival order
	active  []seq
	waiting int // sequences in queue

	// The simulated clock: seconds since the scheduler started. While idle
	// (no active sequence) it runs with the wall clock, from idleSince.
	clock     float64
	idle      bool
	idleSince time.Time

	acct accounting
}

// accounting is what the scheduler counts since start or the last reset.
type accounting struct {
	clockFrom float64   // simulated clock at reset
	wallFrom  time.Time // wall clock at reset
	busy      float64   // sequence-slot seconds of simulated time
	steps     int64
	tokens    int64 // generated tokens
	prompt    int64 // prefilled prompt tokens
	seqs      int64 // finished sequences
	maxActive int
	maxQueue  int // sequences
}

func newScheduler(slots int, lat latency, scale float64) *scheduler {
	s := stoppedScheduler(slots, lat, scale)
	go s.run()
	return s
}

// stoppedScheduler returns a scheduler whose stepping goroutine is not
// started yet: go s.run() starts it.
func stoppedScheduler(slots int, lat latency, scale float64) *scheduler {
	now := time.Now()
	return &scheduler{
		slots:     slots,
		lat:       lat,
		scale:     scale,
		wake:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		exited:    make(chan struct{}),
		idle:      true,
		idleSince: now,
		acct:      accounting{wallFrom: now},
	}
}

// submit queues a job of len(lengths) sequences.
func (s *scheduler) submit(promptTokens int, lengths []int) (*job, error) {
	j := &job{lengths: lengths, promptTokens: promptTokens, produced: make([]int, len(lengths)),
		done: make(chan struct{}), progress: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	j.arrived = s.nowLocked(time.Now())
	if s.idle && len(s.queue) > 0 {
		// The stepping goroutine has not woken up for the first job yet:
		// at a small TimeScale the wake-up delay would be seconds of
		// simulated time, so the busy period starts with the first job's
		// arrival and later ones count as arriving with it.
		j.arrived = s.queue[0].arrived
	}
	s.queue = append(s.queue, j)
	s.waiting += len(lengths)
	s.acct.maxQueue = max(s.acct.maxQueue, s.waiting)
	s.mu.Unlock()
	s.poke()
	return j, nil
}

// cancel aborts a job, as vLLM does when the client goes away: its
// sequences leave the queue and the batch at the next step.
func (s *scheduler) cancel(j *job) {
	s.mu.Lock()
	j.canceled = true
	s.mu.Unlock()
	s.poke()
}

// produced copies into dst the tokens decoded so far of each of j's
// sequences, and returns it.
func (s *scheduler) produced(j *job, dst []int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(dst[:0], j.produced...)
}

func (s *scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close stops the stepping goroutine, fails the jobs left and waits for the
// goroutine to end.
func (s *scheduler) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.quit)
	}
	s.mu.Unlock()
	<-s.exited
}

// nowLocked returns the simulated clock at wall time now.
func (s *scheduler) nowLocked(now time.Time) float64 {
	if s.idle {
		return s.clock + now.Sub(s.idleSince).Seconds()/s.scale
	}
	return s.clock
}

// maxLag bounds how far the stepping goroutine catches up after falling
// behind the wall clock (when the machine is busy).
const maxLag = 100 * time.Millisecond

func (s *scheduler) run() {
	defer close(s.exited)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var target time.Time // wall time at which the current step ends
	for {
		s.mu.Lock()
		s.dropCanceledLocked()
		if s.idle && len(s.queue) > 0 {
			// The busy period starts when its first job arrived (see
			// submit).
			s.clock = max(s.clock, s.queue[0].arrived)
			s.idle = false
			target = time.Now()
		}
		prefill := s.admitLocked()
		active := len(s.active)
		if active == 0 {
			if !s.idle {
				s.idle = true
				s.idleSince = time.Now()
			}
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-s.quit:
				s.failAll()
				return
			}
			continue
		}
		d := s.lat.step(active, prefill)
		s.mu.Unlock()

		target = target.Add(time.Duration(d * s.scale * float64(time.Second)))
		now := time.Now()
		if wait := target.Sub(now); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-s.quit:
				s.failAll()
				return
			}
		} else if wait < -maxLag {
			target = now
		}
		select {
		case <-s.quit:
			s.failAll()
			return
		default:
		}

		s.mu.Lock()
		s.clock += d
		s.acct.busy += float64(active) * d
		s.acct.steps++
		s.acct.tokens += int64(active)
		kept := s.active[:0]
		for _, q := range s.active {
			q.remaining--
			q.job.produced[q.idx]++
			select {
			case q.job.progress <- struct{}{}:
			default:
			}
			if q.remaining > 0 {
				kept = append(kept, q)
				continue
			}
			s.acct.seqs++
			j := q.job
			j.finished++
			if j.finished == len(j.lengths) {
				j.ended = s.clock
				close(j.done)
			}
		}
		clear(s.active[len(kept):])
		s.active = kept
		s.mu.Unlock()
	}
}

// admitLocked moves queued sequences into free slots, first come first
// served, and returns the prompt tokens to prefill (once per job).
func (s *scheduler) admitLocked() (prefill int) {
	for len(s.queue) > 0 && len(s.active) < s.slots {
		j := s.queue[0]
		if j.admitted == 0 {
			j.started = s.clock
			j.arrived = min(j.arrived, j.started)
			prefill += j.promptTokens
			s.acct.prompt += int64(j.promptTokens)
		}
		for j.admitted < len(j.lengths) && len(s.active) < s.slots {
			s.active = append(s.active, seq{job: j, idx: j.admitted, remaining: max(j.lengths[j.admitted], 1)})
			j.admitted++
			s.waiting--
		}
		if j.admitted == len(j.lengths) {
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
	}
	s.acct.maxActive = max(s.acct.maxActive, len(s.active))
	return prefill
}

// dropCanceledLocked removes the sequences of canceled jobs.
func (s *scheduler) dropCanceledLocked() {
	kept := s.active[:0]
	for _, q := range s.active {
		if !q.job.canceled {
			kept = append(kept, q)
		}
	}
	clear(s.active[len(kept):])
	s.active = kept
	queue := s.queue[:0]
	for _, j := range s.queue {
		if j.canceled {
			s.waiting -= len(j.lengths) - j.admitted
			continue
		}
		queue = append(queue, j)
	}
	clear(s.queue[len(queue):])
	s.queue = queue
}

// failAll ends every job left with errClosed.
func (s *scheduler) failAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[*job]bool)
	fail := func(j *job) {
		if seen[j] {
			return
		}
		seen[j] = true
		j.err = errClosed
		close(j.done)
	}
	for _, q := range s.active {
		fail(q.job)
	}
	for _, j := range s.queue {
		fail(j)
	}
	s.active, s.queue, s.waiting = nil, nil, 0
}

// schedStats is a snapshot of the scheduler's accounting.
type schedStats struct {
	accounting
	simSeconds  float64
	wallSeconds float64
	active      int
	queued      int
}

func (s *scheduler) stats() schedStats {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return schedStats{
		accounting:  s.acct,
		simSeconds:  s.nowLocked(now) - s.acct.clockFrom,
		wallSeconds: now.Sub(s.acct.wallFrom).Seconds(),
		active:      len(s.active),
		queued:      s.waiting,
	}
}

// reset starts a new accounting interval.
func (s *scheduler) reset() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acct = accounting{
		clockFrom: s.nowLocked(now),
		wallFrom:  now,
		maxActive: len(s.active),
		maxQueue:  s.waiting,
	}
}
