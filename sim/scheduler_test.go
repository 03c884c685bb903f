package sim

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestLatencyStep(t *testing.T) {
	l := latency{base: 0.01, perSeq: 0.001, prefillPerToken: 0.0001}
	tests := []struct {
		active, prefill int
		want            float64
	}{
		{1, 0, 0.011},
		{64, 0, 0.074},
		{1, 100, 0.021},
	}
	for _, tt := range tests {
		if got := l.step(tt.active, tt.prefill); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("step(%d, %d) = %v, want %v", tt.active, tt.prefill, got, tt.want)
		}
	}
}

func TestSchedulerHonoursSlots(t *testing.T) {
	// Every job is queued before the scheduler starts stepping, however
	// slow the machine.
	s := stoppedScheduler(4, latency{base: 0.01, perSeq: 0.001}, 1e-5)
	defer s.close()
	var jobs []*job
	want := int64(0)
	for i := range 10 {
		lengths := []int{5 + i, 3, 8}
		for _, l := range lengths {
			want += int64(l)
		}
		j, err := s.submit(10, lengths)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	go s.run()
	for i, j := range jobs {
		select {
		case <-j.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("job %d did not finish", i)
		}
		if j.err != nil {
			t.Errorf("job %d: %v", i, j.err)
		}
		if j.Seconds() < j.QueueSeconds() || j.QueueSeconds() < 0 {
			t.Errorf("job %d: queued %v of %v seconds", i, j.QueueSeconds(), j.Seconds())
		}
	}
	st := s.stats()
	if st.maxActive != 4 {
		t.Errorf("max active %d, want 4 (the slots)", st.maxActive)
	}
	if st.maxQueue < 26 {
		t.Errorf("max queue %d, want at least 26 of the 30 sequences", st.maxQueue)
	}
	if st.tokens != want || st.seqs != 30 || st.prompt != 100 {
		t.Errorf("tokens %d sequences %d prompt %d, want %d, 30, 100", st.tokens, st.seqs, st.prompt, want)
	}
	// Admission is first come first served: later jobs waited longer.
	if jobs[9].QueueSeconds() <= jobs[1].QueueSeconds() {
		t.Errorf("job 9 queued %v, job 1 %v: want the later job to wait longer", jobs[9].QueueSeconds(), jobs[1].QueueSeconds())
	}
	// A step never holds more than the slots: the busy slot time is at
	// most slots times the busy clock.
	if st.busy > 4*st.simSeconds {
		t.Errorf("busy %v over 4 slots in %v seconds", st.busy, st.simSeconds)
	}
}

func TestSchedulerCancel(t *testing.T) {
	s := newScheduler(2, latency{base: 1}, 1e-3) // a step takes 1ms of wall time
	defer s.close()
	long, _ := s.submit(0, []int{1 << 20, 1 << 20})
	queued, _ := s.submit(0, []int{1})
	s.cancel(long)
	select {
	case <-queued.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the queued job did not run after the long one was canceled")
	}
	st := s.stats()
	if st.active != 0 || st.queued != 0 || st.seqs != 1 {
		t.Errorf("after cancel: %d active, %d queued, %d finished sequences; want 0, 0, 1", st.active, st.queued, st.seqs)
	}
	select {
	case <-long.done:
		t.Error("a canceled job was reported done")
	default:
	}
}

// TestLatencyGrowsWithBatch checks the simulated time of requests against
// the step model: 20 decode steps, one of them with the prefill.
func TestLatencyGrowsWithBatch(t *testing.T) {
	opts := Options{Seed: 1, MeanTokens: 2000, StepBase: 10 * time.Millisecond, StepPerSeq: time.Millisecond,
		PrefillPerToken: 100 * time.Microsecond}
	_, ts := newTest(t, opts)
	simSeconds := func(n int) (float64, int) {
		resp, body := post(t, nil, ts.URL+EndpointChat, chatReq{Messages: msgs("user", "Count to ten."), N: n, MaxTokens: 20, Seed: ptr[int64](0)})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		sec, err := strconv.ParseFloat(resp.Header.Get("X-Sim-Seconds"), 64)
		if err != nil {
			t.Fatalf("X-Sim-Seconds: %v", err)
		}
		q, err := strconv.ParseFloat(resp.Header.Get("X-Sim-Queue-Seconds"), 64)
		if err != nil || q != 0 {
			t.Errorf("X-Sim-Queue-Seconds %q, want 0 on an idle server", resp.Header.Get("X-Sim-Queue-Seconds"))
		}
		return sec, tokenCount(render(msgs("user", "Count to ten."), true))
	}
	one, prompt := simSeconds(1)
	many, _ := simSeconds(32)
	want := func(n int) float64 { return 20*(0.010+0.001*float64(n)) + 0.0001*float64(prompt) }
	if math.Abs(one-want(1)) > 1e-5 || math.Abs(many-want(32)) > 1e-5 {
		t.Errorf("simulated seconds: n=1 %v, n=32 %v; want %v and %v", one, many, want(1), want(32))
	}
	if many <= one {
		t.Errorf("a batch of 32 took %v, one sequence %v: latency must grow with the batch", many, one)
	}
}

// TestUtilization checks the accounting under saturating load and at rest.
func TestUtilization(t *testing.T) {
	s, ts := newTest(t, Options{Seed: 1, Slots: 4, MeanTokens: 8000, TimeScale: 1e-2})
	// Saturating load: 16 clients each ask for 4 long sequences at once, so
	// the queue stays full for the whole measurement.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+EndpointChat,
				jsonBody(t, chatReq{Messages: msgs("user", "client "+strconv.Itoa(c)), N: 4, MaxTokens: 5000, Seed: ptr[int64](0)}))
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Errorf("a request finished during the measurement: status %d", resp.StatusCode)
			}
		})
	}
	waitFor(t, func() bool { st := s.Stats(); return st.Active+st.Queued == 64 })
	s.ResetStats()
	waitFor(t, func() bool { return s.Stats().Steps >= 1000 })
	busy := s.Stats()
	stop()
	wg.Wait()
	t.Logf("under load: utilization %.3f, max queue %d, %.0f tokens/sim s, %.0f tokens/wall s",
		busy.Utilization, busy.MaxQueue, busy.TokensPerSimSec, busy.TokensPerWallSec)
	if busy.Utilization < 0.99 || busy.Utilization > 1+1e-9 {
		t.Errorf("utilization under saturating load %v, want near 1", busy.Utilization)
	}
	if busy.MaxActive != 4 || busy.MaxQueue != 60 {
		t.Errorf("max active %d, max queue %d: want 4 and 60", busy.MaxActive, busy.MaxQueue)
	}
	// Throughput at saturation follows the step model: 4 tokens per step of
	// 15ms+4*250µs (plus a little prefill).
	if want := 4 / 0.016; busy.TokensPerSimSec > want+1e-9 || busy.TokensPerSimSec < 0.95*want {
		t.Errorf("tokens per simulated second %v, want about %v", busy.TokensPerSimSec, want)
	}

	waitFor(t, func() bool { return s.Stats().Active == 0 })
	s.ResetStats()
	time.Sleep(20 * time.Millisecond)
	idle := s.Stats()
	if idle.Utilization != 0 || idle.SimSeconds < 1 {
		t.Errorf("idle: utilization %v over %v simulated seconds, want 0 over at least 1", idle.Utilization, idle.SimSeconds)
	}
	// One short request on an otherwise idle server barely registers.
	post(t, nil, ts.URL+EndpointChat, chatReq{Messages: msgs("user", "hi"), MaxTokens: 10})
	time.Sleep(20 * time.Millisecond)
	if u := s.Stats().Utilization; u <= 0 || u > 0.05 {
		t.Errorf("utilization after one short request %v, want small but positive", u)
	}
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloseEndsGoroutine(t *testing.T) {
	s := New(Options{Seed: 1, TimeScale: 1, MeanTokens: 10000}) // real time: requests take minutes
	ts := newHTTPServer(t, s)
	errc := make(chan int, 1)
	go func() {
		resp, err := http.Post(ts.URL+EndpointChat, "application/json",
			jsonBody(t, chatReq{Messages: msgs("user", "take your time")}))
		if err != nil {
			errc <- -1
			return
		}
		resp.Body.Close()
		errc <- resp.StatusCode
	}()
	waitFor(t, func() bool { return s.Stats().Active == 1 })
	s.Close()
	select {
	case <-s.sched.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the scheduler goroutine did not end on Close")
	}
	if got := <-errc; got != http.StatusServiceUnavailable {
		t.Errorf("request in progress at Close: status %d, want 503", got)
	}
	resp, body := post(t, nil, ts.URL+EndpointChat, chatReq{Messages: msgs("user", "hi")})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request after Close: status %d (%s), want 503", resp.StatusCode, body)
	}
	s.Close() // idempotent
}

func TestSchedulerMoreSequencesThanSlots(t *testing.T) {
	s := newScheduler(2, latency{base: 0.01}, 1e-5)
	defer s.close()
	j, err := s.submit(0, []int{3, 3, 3, 3, 3})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
		t.Fatal("a job of 5 sequences on 2 slots did not finish")
	}
	// Three waves of 3 steps: 2, 2 and 1 sequences.
	if st := s.stats(); st.maxActive != 2 || st.steps != 9 || st.tokens != 15 {
		t.Errorf("max active %d, steps %d, tokens %d; want 2, 9, 15", st.maxActive, st.steps, st.tokens)
	}
	if got, want := j.Seconds(), 0.09; math.Abs(got-want) > 1e-9 {
		t.Errorf("job took %v simulated seconds, want %v", got, want)
	}
}
