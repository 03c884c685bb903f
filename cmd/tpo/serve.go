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

func cmdServe(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var b backendFlags
	b.register(fs)
	var sb simBackend
	sb.register(fs)
	var lf listenFlags
	lf.register(fs, "127.0.0.1:8080", "API `key` clients must send as a bearer token; repeat for several (also $TPO_API_KEYS, comma-separated)")
	addr := &lf.addr
	maxBody := fs.Int64("max-body", server.DefaultMaxBody, "largest request body in `bytes`")
	reqTimeout := fs.Duration("request-timeout", server.DefaultRequestTimeout, "deadline of one request (0: none)")
	replicaTimeout := fs.Duration("replica-timeout", time.Minute, "with a PostgreSQL store: the runs of a tpo serve (on any machine) that has not said it is alive for this long are marked interrupted")
	deadline := fs.Duration("deadline", 0, "when an answer is due after a request arrives: the best answer found by then is returned (0: none; a request's tpo.deadline_ms may ask for less)")
	maxConcurrent := fs.Int("max-concurrent", server.DefaultMaxConcurrent, "optimizations run at once")
	queueWait := fs.Duration("queue-wait", server.DefaultQueueWait, "how long a request waits for a free optimization slot before a 429")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may take to finish before they are cancelled")
	maxWidth := fs.Int("max-width", 32, "largest width a request may ask for")
	maxDepth := fs.Int("max-depth", 10, "largest depth a request may ask for")
	maxN := fs.Int("max-n", 16, "largest n (choices) a request may ask for, also with \"mode\": \"off\"")
	maxTokensCap := fs.Int("max-tokens-cap", server.DefaultMaxTokensCap, "largest max_tokens (or max_completion_tokens) a request may ask for, also with \"mode\": \"off\"")
	critiqueCap := fs.Int("critique-max-tokens-cap", server.DefaultCritiqueMaxTokensCap, "largest tpo.critique_max_tokens a request may ask for")
	verbose := fs.Bool("v", false, "log every request's optimization")
	var jf jobFlags
	jf.register(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), serveUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", strings.Join(pos, " "))
	}
	apiKeys, err := lf.apiKeys()
	if err != nil {
		return err
	}
	hosts, err := lf.allowedHosts()
	if err != nil {
		return err
	}
	if err := lf.checkTimeouts(); err != nil {
		return err
	}
	if err := jf.check(); err != nil {
		return err
	}
	switch {
	case *maxConcurrent < 1:
		return usagef("--max-concurrent must be at least 1")
	case *maxBody < 1:
		return usagef("--max-body must be at least 1")
	case *maxWidth < 1 || *maxDepth < 0 || *maxN < 1:
		return usagef("--max-width and --max-n must be at least 1, --max-depth at least 0")
	case *maxTokensCap < 1 || *critiqueCap < 1:
		return usagef("--max-tokens-cap and --critique-max-tokens-cap must be at least 1")
	case *reqTimeout < 0 || *queueWait < 0 || *shutdownTimeout < 0 || *deadline < 0:
		return usagef("durations must not be negative")
	case *replicaTimeout < 6*time.Second:
		return usagef("--replica-timeout must be at least 6s (replicas say they are alive every sixth of it)")
	case *deadline > 0 && *reqTimeout > 0 && *deadline >= *reqTimeout:
		return usagef("--deadline (%v) must be shorter than --request-timeout (%v), or the request times out before its answer is due", *deadline, *reqTimeout)
	}
	// The server's own settings must be within what requests may ask for.
	cfg, err := b.config()
	if err != nil {
		return err
	}
	if cfg.Width > *maxWidth || cfg.Depth > *maxDepth {
		return usagef("--width %d / --depth %d exceed --max-width %d / --max-depth %d", cfg.Width, cfg.Depth, *maxWidth, *maxDepth)
	}
	if cfg.Sampling.MaxTokens > *maxTokensCap || cfg.Critique.MaxTokens > *critiqueCap {
		return usagef("--max-tokens %d / --critique-max-tokens %d exceed --max-tokens-cap %d / --critique-max-tokens-cap %d",
			cfg.Sampling.MaxTokens, cfg.Critique.MaxTokens, *maxTokensCap, *critiqueCap)
	}
	log := env.log
	if *verbose {
		log = env.logAt(slog.LevelInfo)
	}

	stopSim, err := sb.start(ctx, env, &b)
	if err != nil {
		return err
	}
	defer stopSim()
	b.tracer = env.tracer
	bk, err := b.build(ctx, log)
	if err != nil {
		return err
	}
	// A request may pick the configured reward backend or, when that is
	// another, the judge on the policy server: {"tpo": {"reward": "judge"}}.
	scorers := map[string]tpo.Scorer{b.reward: bk.reward}
	if b.reward != "judge" {
		scorers["judge"], err = b.policyJudge(log)
	}
	if err != nil {
		return err
	}
	for name, s := range scorers {
		scorers[name] = server.WithUpstreamErrors(s)
	}
	if bk.config.Width > *maxWidth || bk.config.Depth > *maxDepth {
		return usagef("--width %d / --depth %d exceed --max-width %d / --max-depth %d", bk.config.Width, bk.config.Depth, *maxWidth, *maxDepth)
	}
	store, err := openStore(ctx, b.store)
	if err != nil {
		return err
	}
	defer store.Close()
	self, err := markInterrupted(ctx, env, store)
	if err != nil {
		return err
	}
	filesDir, err := jf.open(b.store)
	if err != nil {
		return err
	}
	if rs, ok := store.(server.ReplicaStore); ok {
		// Replicas sharing the store: beat, and end the runs of those
		// that died. The watch ends with the command.
		wctx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			server.WatchReplicas(wctx, rs, self, *replicaTimeout/6, *replicaTimeout, log)
		}()
		defer func() { stopWatch(); <-watched }()
	}

	timeout := *reqTimeout
	if timeout == 0 {
		timeout = -1 // server: negative means none
	}
	wait := *queueWait
	if wait == 0 {
		wait = -1
	}
	srv, err := server.New(server.Options{
		Policy:        server.OpenAI(bk.policy),
		Scorers:       scorers,
		DefaultReward: b.reward,
		Config:        bk.config,
		Templates:     bk.templates,
		Store:         store,
		Owner:         &self,
		Limits: server.Limits{MaxWidth: *maxWidth, MaxDepth: *maxDepth, MaxN: *maxN,
			MaxTokens: *maxTokensCap, MaxCritiqueTokens: *critiqueCap},
		MaxBody:        *maxBody,
		RequestTimeout: timeout,
		Deadline:       *deadline,
		MaxConcurrent:  *maxConcurrent,
		QueueWait:      wait,
		APIKeys:        apiKeys,
		AllowedHosts:   hosts,
		WriteTimeout:   orNone(lf.writeTimeout),
		ReadTimeout:    orNone(lf.readTimeout),
		Logger:         log,
		Tracer:         env.tracer,
		Jobs:           store,
		Files:          filesDir,
		Presets:        jf.presets.vals,
		MaxBackground:  jf.maxBackground,

		BatchConcurrency: jf.batchConcurrency,
	})
	if err != nil {
		return err
	}
	if err := resumeJobs(ctx, env, srv); err != nil {
		return err
	}

	handler, err := withUI(srv, store, srv, ui.Options{APIKeys: apiKeys, AllowedHosts: hosts,
		WriteTimeout: orNone(lf.writeTimeout), ReadTimeout: orNone(lf.readTimeout), Logger: log})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Handlers run under work, not ctx: a signal stops new connections,
	// and work is cancelled only when the shutdown timeout has passed.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	hs := lf.httpServer(handler, log)
	hs.BaseContext = func(net.Listener) context.Context { return work }
	auth := "API keys required"
	if len(apiKeys) == 0 {
		auth = "no authentication"
	}
	fmt.Fprintf(env.stderr, "tpo serve: listening on http://%s/v1 (policy model %s, reward %s, store %s, %s)\n",
		ln.Addr(), b.policyModel, b.reward, storeName(b.store), auth)
	fmt.Fprintf(env.stderr, "tpo serve: web UI at http://%s/ui/\n", ln.Addr())
	limit, used := filesDir.Limit()
	fmt.Fprintf(env.stderr, "tpo serve: files (batches) in %s, %s of %s used\n", filesDir.Path(), byteSize(used), byteSize(limit))
	printHosts(env, "tpo serve", hosts)

	// Background responses and batches run on while the requests in
	// flight finish, and get what is left of the shutdown timeout.
	var stopAt time.Time
	err = serveUntil(ctx, hs, ln, shutdown{
		grace: *shutdownTimeout,
		stopping: func() {
			stopAt = time.Now()
			fmt.Fprintf(env.stderr, "tpo serve: shutting down; waiting up to %v for requests in flight and background responses\n", *shutdownTimeout)
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
	jctx, cancel := context.WithDeadline(context.Background(), stopAt.Add(*shutdownTimeout))
	defer cancel()
	return errors.Join(err, shutdownJobs(jctx, env, srv))
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
