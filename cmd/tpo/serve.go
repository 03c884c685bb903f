package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/guard"
	"github.com/tpoproject/tpo/internal/proc"
	"github.com/tpoproject/tpo/server"
	"github.com/tpoproject/tpo/ui"
)

const serveUsage = `usage: tpo serve [flags]

Serves the OpenAI chat completions and Responses APIs: point any OpenAI
client's base URL at http://ADDR/v1 and every answer comes back optimized with
Test-Time Preference Optimization. The request's model names the policy model,
or PRESET/MODEL (tpo-d2-n5/llama3.1:8b) for a preset's settings; an optional
"tpo" object in the body ({"mode", "width", "depth", "reward", ...}) overrides
the settings below for that request, and {"mode": "off"} passes it through.
Responses may run in the background; the Files and Batch APIs optimize whole
files of requests. Every optimization is recorded in the run store.

Flags:
`

// serveFlags are tpo serve's own flags: limits, timeouts, slots.
type serveFlags struct {
	backendFlags
	sim    simBackend
	listen listenFlags
	jobs   jobFlags

	maxBody                                int64
	reqTimeout, replicaTimeout, deadline   time.Duration
	queueWait, shutdownTimeout             time.Duration
	maxConcurrent                          int
	maxWidth, maxDepth, maxN, maxTokensCap int
	critiqueCap                            int
	verbose                                bool
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	f.backendFlags.register(fs)
	f.sim.register(fs)
	f.listen.register(fs, "127.0.0.1:8080", "API `key` clients must send as a bearer token; repeat for several (also $TPO_API_KEYS, comma-separated)")
	fs.Int64Var(&f.maxBody, "max-body", server.DefaultMaxBody, "largest request body in `bytes`")
	fs.DurationVar(&f.reqTimeout, "request-timeout", server.DefaultRequestTimeout, "deadline of one request (0: none)")
	fs.DurationVar(&f.replicaTimeout, "replica-timeout", time.Minute, "with a PostgreSQL store: a tpo serve (on any machine) that has not said it is alive for this long counts as ended: its runs are marked interrupted, its background responses failed, and its batches continue in a live one")
	fs.DurationVar(&f.deadline, "deadline", 0, "when an answer is due after a request arrives: the best answer found by then is returned (0: none; a request's tpo.deadline_ms may ask for less)")
	fs.IntVar(&f.maxConcurrent, "max-concurrent", server.DefaultMaxConcurrent, "optimizations run at once")
	fs.DurationVar(&f.queueWait, "queue-wait", server.DefaultQueueWait, "how long a request waits for a free optimization slot before a 429")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may take to finish before they are cancelled")
	fs.IntVar(&f.maxWidth, "max-width", 32, "largest width a request may ask for")
	fs.IntVar(&f.maxDepth, "max-depth", 10, "largest depth a request may ask for")
	fs.IntVar(&f.maxN, "max-n", 16, "largest n (choices) a request may ask for, also with \"mode\": \"off\"")
	fs.IntVar(&f.maxTokensCap, "max-tokens-cap", server.DefaultMaxTokensCap, "largest max_tokens (or max_completion_tokens) a request may ask for, also with \"mode\": \"off\"")
	fs.IntVar(&f.critiqueCap, "critique-max-tokens-cap", server.DefaultCritiqueMaxTokensCap, "largest tpo.critique_max_tokens a request may ask for")
	fs.BoolVar(&f.verbose, "v", false, "log every request's optimization")
	f.jobs.register(fs)
}

// check settles the usage errors of the flags.
func (f *serveFlags) check() error {
	if err := f.listen.checkTimeouts(); err != nil {
		return err
	}
	if err := f.jobs.check(); err != nil {
		return err
	}
	if err := f.jobs.checkStore(f.store); err != nil {
		return err
	}
	switch {
	case f.maxConcurrent < 1:
		return usagef("--max-concurrent must be at least 1")
	case f.maxBody < 1:
		return usagef("--max-body must be at least 1")
	case f.maxWidth < 1 || f.maxDepth < 0 || f.maxN < 1:
		return usagef("--max-width and --max-n must be at least 1, --max-depth at least 0")
	case f.maxTokensCap < 1 || f.critiqueCap < 1:
		return usagef("--max-tokens-cap and --critique-max-tokens-cap must be at least 1")
	case f.reqTimeout < 0 || f.queueWait < 0 || f.shutdownTimeout < 0 || f.deadline < 0:
		return usagef("durations must not be negative")
	case f.replicaTimeout < 6*time.Second:
		return usagef("--replica-timeout must be at least 6s (replicas say they are alive every sixth of it)")
	case f.deadline > 0 && f.reqTimeout > 0 && f.deadline >= f.reqTimeout:
		return usagef("--deadline (%v) must be shorter than --request-timeout (%v), or the request times out before its answer is due", f.deadline, f.reqTimeout)
	}
	// The server's own settings must be within what requests may ask for.
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if cfg.Width > f.maxWidth || cfg.Depth > f.maxDepth {
		return usagef("--width %d / --depth %d exceed --max-width %d / --max-depth %d", cfg.Width, cfg.Depth, f.maxWidth, f.maxDepth)
	}
	if cfg.Sampling.MaxTokens > f.maxTokensCap || cfg.Critique.MaxTokens > f.critiqueCap {
		return usagef("--max-tokens %d / --critique-max-tokens %d exceed --max-tokens-cap %d / --critique-max-tokens-cap %d",
			cfg.Sampling.MaxTokens, cfg.Critique.MaxTokens, f.maxTokensCap, f.critiqueCap)
	}
	return nil
}

// serveParts is what tpo serve opens before it listens.
type serveParts struct {
	bk      *backends
	scorers map[string]tpo.Scorer
	store   runStore
	self    tpo.Owner
	files   files.Store
	keys    []string
	hosts   *guard.Hosts
	log     *slog.Logger
}

func cmdServe(ctx context.Context, args []string, env *environ) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f.register(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), serveUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", strings.Join(pos, " "))
	}
	var p serveParts
	if p.keys, err = f.listen.apiKeys(); err != nil {
		return err
	}
	if p.hosts, err = f.listen.allowedHosts(); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	p.log = env.log
	if f.verbose {
		p.log = env.logAt(slog.LevelInfo)
	}
	stopSim, err := f.sim.start(ctx, env, &f.backendFlags)
	if err != nil {
		return err
	}
	defer stopSim()
	if err := f.openBackends(ctx, env, &p); err != nil {
		return err
	}
	if p.store, err = openStore(ctx, f.store); err != nil {
		return err
	}
	defer p.store.Close()
	if p.self, err = markInterrupted(ctx, env, p.store); err != nil {
		return err
	}
	if p.files, err = f.jobs.open(f.store, p.store); err != nil {
		return err
	}
	srv, err := server.New(f.serverOptions(env, &p))
	if err != nil {
		return err
	}
	if err := resumeJobs(ctx, env, srv); err != nil {
		return err
	}
	defer watchReplicas(ctx, p, srv, f.replicaTimeout)()
	return f.serve(ctx, env, srv, p)
}

// openBackends builds the policy client and the scorers a request may
// pick: the configured reward backend or, when that is another, the
// judge on the policy server ({"tpo": {"reward": "judge"}}).
func (f *serveFlags) openBackends(ctx context.Context, env *environ, p *serveParts) error {
	f.tracer = env.tracer
	bk, err := f.build(ctx, p.log)
	if err != nil {
		return err
	}
	p.bk = bk
	p.scorers = map[string]tpo.Scorer{f.reward: bk.reward}
	if f.reward != "judge" {
		if p.scorers["judge"], err = f.policyJudge(p.log); err != nil {
			return err
		}
	}
	for name, s := range p.scorers {
		p.scorers[name] = server.WithUpstreamErrors(s)
	}
	return nil
}

// watchReplicas beats, ends the runs of dead replicas and has srv take
// over their jobs, when the store is shared; the function it returns
// stops the watch and waits for it.
func watchReplicas(ctx context.Context, p serveParts, srv *server.Server, timeout time.Duration) (stop func()) {
	rs, ok := p.store.(server.ReplicaStore)
	if !ok {
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		server.WatchReplicas(wctx, rs, p.self, timeout/6, timeout, srv, p.log)
	}()
	return func() { cancel(); <-watched }
}

func (f *serveFlags) serverOptions(env *environ, p *serveParts) server.Options {
	return server.Options{
		Policy:        server.OpenAI(p.bk.policy),
		Scorers:       p.scorers,
		DefaultReward: f.reward,
		Config:        p.bk.config,
		Templates:     p.bk.templates,
		Store:         p.store,
		Owner:         &p.self,
		Limits: server.Limits{MaxWidth: f.maxWidth, MaxDepth: f.maxDepth, MaxN: f.maxN,
			MaxTokens: f.maxTokensCap, MaxCritiqueTokens: f.critiqueCap},
		MaxBody:          f.maxBody,
		RequestTimeout:   orNone(f.reqTimeout),
		Deadline:         f.deadline,
		MaxConcurrent:    f.maxConcurrent,
		QueueWait:        orNone(f.queueWait),
		APIKeys:          p.keys,
		AllowedHosts:     p.hosts,
		WriteTimeout:     orNone(f.listen.writeTimeout),
		ReadTimeout:      orNone(f.listen.readTimeout),
		Logger:           p.log,
		Tracer:           env.tracer,
		Jobs:             p.store,
		Files:            p.files,
		Presets:          f.jobs.presets.vals,
		MaxBackground:    f.jobs.maxBackground,
		BatchConcurrency: f.jobs.batchConcurrency,
	}
}

// serve listens and serves srv and the web UI until ctx ends, then shuts
// down: background responses and batches run on while the requests in
// flight finish, and get what is left of the shutdown timeout.
func (f *serveFlags) serve(ctx context.Context, env *environ, srv *server.Server, p serveParts) error {
	handler, err := withUI(srv, p.store, srv, ui.Options{APIKeys: p.keys, AllowedHosts: p.hosts,
		WriteTimeout: orNone(f.listen.writeTimeout), ReadTimeout: orNone(f.listen.readTimeout), Logger: p.log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Handlers run under work, not ctx: a signal stops new connections,
	// and work is cancelled only when the shutdown timeout has passed.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	hs := f.listen.httpServer(handler, p.log)
	hs.BaseContext = func(net.Listener) context.Context { return work }
	f.printListening(ctx, env, ln.Addr(), p)

	var stopAt time.Time
	err = serveUntil(ctx, hs, ln, shutdown{
		grace: f.shutdownTimeout,
		stopping: func() {
			stopAt = time.Now()
			fmt.Fprintf(env.stderr, "tpo serve: shutting down; waiting up to %v for requests in flight and background responses\n", f.shutdownTimeout)
		},
		// Cancel what is still running and give the handlers a moment to
		// answer with an error and record their runs.
		overrun: func() {
			n := len(srv.InFlight())
			fmt.Fprintf(env.stderr, "tpo serve: cancelling %s still running\n", plural(n, "optimization", "optimizations"))
			stopWork()
		},
	})
	if stopAt.IsZero() {
		stopAt = time.Now()
	}
	jctx, cancel := context.WithDeadline(context.Background(), stopAt.Add(f.shutdownTimeout))
	defer cancel()
	return errors.Join(err, shutdownJobs(jctx, env, srv))
}

func (f *serveFlags) printListening(ctx context.Context, env *environ, addr net.Addr, p serveParts) {
	auth := "API keys required"
	if len(p.keys) == 0 {
		auth = "no authentication"
	}
	fmt.Fprintf(env.stderr, "tpo serve: listening on http://%s/v1 (policy model %s, reward %s, store %s, %s)\n",
		addr, f.policyModel, f.reward, storeName(f.store), auth)
	fmt.Fprintf(env.stderr, "tpo serve: web UI at http://%s/ui/\n", addr)
	if limit, used, err := p.files.Usage(ctx); err != nil {
		p.log.Warn("reading how much room the files take failed", "err", err)
		fmt.Fprintf(env.stderr, "tpo serve: files (batches) in %s\n", p.files.Where())
	} else {
		fmt.Fprintf(env.stderr, "tpo serve: files (batches) in %s, %s of %s used\n", p.files.Where(), byteSize(used), byteSize(limit))
	}
	printHosts(env, "tpo serve", p.hosts)
}

// markInterrupted marks the runs that tpo serve processes of this machine
// left unfinished when they ended (killed, crashed), saying how many, and
// returns this process as the owner of the runs it will write.
func markInterrupted(ctx context.Context, env *environ, store tpo.Store) (tpo.Owner, error) {
	self, err := proc.Self()
	if err != nil {
		return self, fmt.Errorf("identifying this process as the owner of its runs: %w", err)
	}
	in, ok := store.(tpo.Interrupter)
	if !ok {
		return self, nil
	}
	ids, err := server.InterruptAbandoned(ctx, in, self, proc.Alive, time.Now())
	if err != nil {
		return self, fmt.Errorf("store: marking the runs of ended processes: %w", err)
	}
	if len(ids) > 0 {
		fmt.Fprintf(env.stderr, "tpo serve: %s left unfinished by a tpo serve that ended (killed or crashed) marked as interrupted: %s\n",
			plural(len(ids), "run", "runs"), idList(ids, maxListed))
	}
	return self, nil
}

// isLoopback reports whether addr (host:port) names a loopback host.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
