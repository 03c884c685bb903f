package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tpoproject/tpo/guard"
	"github.com/tpoproject/tpo/ui"
)

const uiUsage = `usage: tpo ui [flags]

Serves the web UI on the runs of a store: every run with its settings and
progress, reward charts, and for each item the whole trajectory of its
optimization (candidates and scores, critiques, instructions, the messages
sent to the model). Open http://ADDR/ui/ in a browser. Pages of runs that
are still being written (by a tpo run in another process) update as they
progress. The UI writes nothing but the deletions a user confirms.

tpo serve serves the same pages at /ui, with live views of the requests it
is optimizing.

Flags:
`

func cmdUI(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("ui", flag.ContinueOnError)
	storePath := fs.String("store", "tpo.db", storeHelp)
	var lf listenFlags
	lf.register(fs, "127.0.0.1:8081", "`key` browsers must give as the password (any user name); repeat for several (also $TPO_API_KEYS, comma-separated)")
	addr := &lf.addr
	poll := fs.Duration("poll", ui.DefaultPollInterval, "how often pages of runs still being written look for progress at first (it slows down while nothing changes)")
	verbose := fs.Bool("v", false, "log deletions and errors at info level")
	fs.Usage = func() { fmt.Fprint(fs.Output(), uiUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("ui takes no arguments, got %q (give the store with --store)", strings.Join(pos, " "))
	}
	if *poll <= 0 {
		return usagef("--poll must be positive")
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
	// Opening a SQLite store creates it: do not make an empty one for a typo.
	if _, err := os.Stat(*storePath); err != nil && isStoreFile(*storePath) {
		return fmt.Errorf("store: %w", err)
	}
	log := env.log
	if *verbose {
		log = env.logAt(slog.LevelInfo)
	}
	store, err := openStore(ctx, *storePath)
	if err != nil {
		return err
	}
	defer store.Close()
	h, err := ui.New(ui.Options{Store: store, Prefix: "/ui", Logger: log, APIKeys: apiKeys, PollInterval: *poll,
		AllowedHosts: hosts, WriteTimeout: orNone(lf.writeTimeout), ReadTimeout: orNone(lf.readTimeout)})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := lf.httpServer(uiRoot(h, hosts), log)
	fmt.Fprintf(env.stderr, "tpo ui: serving the runs of %s at http://%s/ui/\n", storeName(*storePath), ln.Addr())
	printHosts(env, "tpo ui", hosts)
	// Pages poll; nothing long-lived needs waiting for.
	return serveUntil(ctx, hs, ln, shutdown{grace: 5 * time.Second})
}

// uiRoot serves the UI at /ui and sends the root there (for the hosts the
// UI answers to).
func uiRoot(h http.Handler, hosts *guard.Hosts) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && hosts.Allows(r.Host) {
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// withUI mounts the web UI at /ui in front of the API server of tpo serve,
// with live views of the requests it optimizes. The UI asks for the same
// API keys as the API (opts.APIKeys), as the password of HTTP Basic
// authentication.
func withUI(api http.Handler, store ui.Store, live ui.Live, opts ui.Options) (http.Handler, error) {
	opts.Store, opts.Live, opts.Prefix = store, live, "/ui"
	h, err := ui.New(opts)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") {
			h.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	}), nil
}

// printHosts says which host names the server answers to.
func printHosts(env *environ, cmd string, hosts *guard.Hosts) {
	if hosts.Any() {
		fmt.Fprintf(env.stderr, "%s: answering to any host name (--allowed-host *)\n", cmd)
		return
	}
	fmt.Fprintf(env.stderr, "%s: answering to the host names %s; others get 421 (add one with --allowed-host)\n", cmd, hosts)
}
