package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/reward"
	"github.com/tpoproject/tpo/sim"
)

// Sim is a simulated model server listening on a loopback port.
type Sim struct {
	*sim.Server
	// URL is the server's root URL (http://127.0.0.1:PORT); the policy's
	// OpenAI base URL is URL + "/v1".
	URL string
	hs  *http.Server
	// served receives the result of Serve when it returns.
	served chan error
}

// StartSim starts a simulated server with opts on a free loopback port.
func StartSim(opts sim.Options) (*Sim, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sim: listen: %w", err)
	}
	s := &Sim{Server: sim.New(opts), URL: "http://" + ln.Addr().String(), served: make(chan error, 1)}
	s.hs = &http.Server{Handler: s.Server, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go func() { s.served <- s.hs.Serve(ln) }()
	return s, nil
}

// Close stops the simulated server: its requests in progress end with 503
// and its listener closes.
func (s *Sim) Close() {
	s.Server.Close()
	s.hs.Close()
	<-s.served
}

// ClientOptions configure the policy and reward clients. Zero values mean
// the defaults of `tpo run`.
type ClientOptions struct {
	PolicyInFlight int           // most policy requests in flight (default 64)
	RewardInFlight int           // most reward requests in flight (default 32)
	Retries        int           // retries of a failed request (default 4; negative: none)
	PolicyTimeout  time.Duration // per attempt (default 10m)
	RewardTimeout  time.Duration // per attempt (default 2m)
	BaseBackoff    time.Duration // first retry's backoff (default httpx's 500ms)
	MaxBackoff     time.Duration // backoff cap (default httpx's 30s)
	// Transport, when set, carries both clients' requests (so that the
	// caller can close its idle connections); default: httpx's own.
	Transport *http.Transport
	Logger    *slog.Logger
}

// Defaults of `tpo run`'s client flags.
const (
	DefaultPolicyInFlight = 64
	DefaultRewardInFlight = 32
	DefaultRetries        = 4
	DefaultPolicyTimeout  = 10 * time.Minute
	DefaultRewardTimeout  = 2 * time.Minute
)

func (o ClientOptions) withDefaults() ClientOptions {
	if o.PolicyInFlight == 0 {
		o.PolicyInFlight = DefaultPolicyInFlight
	}
	if o.RewardInFlight == 0 {
		o.RewardInFlight = DefaultRewardInFlight
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.PolicyTimeout <= 0 {
		o.PolicyTimeout = DefaultPolicyTimeout
	}
	if o.RewardTimeout <= 0 {
		o.RewardTimeout = DefaultRewardTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Clients returns the clients `tpo run --reward vllm` builds for a policy
// served at root+"/v1" and a reward model served at root, both by the
// simulated server's model names.
func Clients(root string, o ClientOptions) (*openai.Client, *reward.VLLM, error) {
	o = o.withDefaults()
	var hc *http.Client
	if o.Transport != nil {
		hc = &http.Client{Transport: o.Transport}
	}
	pol, err := openai.New(openai.Options{
		Options: httpx.Options{Name: "policy", URLs: []string{root + "/v1"}, Timeout: o.PolicyTimeout,
			MaxRetries: o.Retries, MaxInFlight: o.PolicyInFlight, BaseBackoff: o.BaseBackoff,
			MaxBackoff: o.MaxBackoff, HTTPClient: hc, Logger: o.Logger},
		Model: "sim-policy",
	})
	if err != nil {
		return nil, nil, err
	}
	rw, err := reward.NewVLLM(reward.VLLMOptions{Options: httpx.Options{URLs: []string{root}, MaxInFlight: o.RewardInFlight, MaxRetries: o.Retries, Timeout: o.RewardTimeout, BaseBackoff: o.BaseBackoff, MaxBackoff: o.MaxBackoff, HTTPClient: hc, Logger: o.Logger}, Model: "sim-reward"})
	if err != nil {
		return nil, nil, err
	}
	return pol, rw, nil
}

// topics make the synthetic prompts differ in subject and length.
var topics = []string{
	"how a hash table resolves collisions",
	"why the sky is blue",
	"the causes of the French Revolution",
	"how to write a cover letter for a first job",
	"the difference between a virus and a bacterium",
	"how compound interest works",
	"what a monad is, for a Python programmer",
	"how to keep basil alive on a windowsill",
	"the rules of chess castling",
	"how vaccines train the immune system",
	"a short poem about autumn in a harbour town",
	"how to negotiate a salary",
}

// Prompts returns n synthetic single-turn items with ids "1".."n". Their
// prompts differ in subject and length (from about 20 to 120 tokens).
func Prompts(n int) []tpo.Item {
	items := make([]tpo.Item, n)
	for i := range items {
		var b strings.Builder
		fmt.Fprintf(&b, "Question number %d: explain %s.", i+1, topics[i%len(topics)])
		for k := range (i * 7) % 11 {
			fmt.Fprintf(&b, " Please also cover point %d in some detail, with an example.", k+1)
		}
		items[i] = tpo.Item{ID: fmt.Sprint(i + 1), Messages: []tpo.Message{{Role: tpo.RoleUser, Content: b.String()}}}
	}
	return items
}

// WriteJSONL writes items as a JSON Lines dataset of {"id", "prompt"}
// objects, the format `tpo run --data` reads.
func WriteJSONL(w io.Writer, items []tpo.Item) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, it := range items {
		if err := enc.Encode(map[string]string{"id": it.ID, "prompt": it.Prompt()}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// openDataset writes items to a JSON Lines file in dir and opens it as
// `tpo run --data` does.
func openDataset(dir string, items []tpo.Item) (*dataset.Source, func() error, error) {
	path := filepath.Join(dir, "prompts.jsonl")
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	err = WriteJSONL(f, items)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("writing the dataset: %w", err)
	}
	r, err := dataset.Open(path, dataset.Options{})
	if err != nil {
		return nil, nil, err
	}
	return dataset.NewSource(r, dataset.SourceOptions{}), r.Close, nil
}

// ctxSleep waits d or until ctx ends.
func ctxSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
