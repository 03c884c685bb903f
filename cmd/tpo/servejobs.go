package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/internal/proc"
	"github.com/tpoproject/tpo/postgres"
	"github.com/tpoproject/tpo/server"
)

// jobFlags are the flags of tpo serve's work beyond one request: the
// presets of /v1/models, background responses, files and batches.
type jobFlags struct {
	presets          listFlag
	filesDir         string
	filesLimit       int64
	batchConcurrency int
	maxBackground    int
}

func (j *jobFlags) register(fs *flag.FlagSet) {
	fs.Var(&j.presets, "preset", "preset `NAME` that /v1/models lists for each model as NAME/MODEL (tpo, revision, bon, off, with -dD and -nN: tpo-d2-n5); repeat for several (default tpo and off); a request may name any preset")
	fs.StringVar(&j.filesDir, "files-dir", "", "with a SQLite store: `directory` of the Files API's files, batch input and output (default: tpo-files beside the store); with a PostgreSQL store they are kept in the database, which every replica shares")
	fs.Int64Var(&j.filesLimit, "files-limit", 1<<30, "most `bytes` the files hold (with a PostgreSQL store: those of every replica): uploads beyond are refused (413); a batch's output is always written")
	fs.IntVar(&j.batchConcurrency, "batch-concurrency", server.DefaultBatchConcurrency, "requests of a batch optimized at once, besides --max-concurrent")
	fs.IntVar(&j.maxBackground, "max-background", server.DefaultMaxBackground, "background responses queued or running at once (429 beyond)")
}

func (j *jobFlags) check() error {
	if j.presets.vals == nil {
		j.presets.vals = server.DefaultPresets
	}
	if err := server.ParsePresets(j.presets.vals); err != nil {
		return usagef("--preset: %v", err)
	}
	switch {
	case j.filesLimit < 1:
		return usagef("--files-limit must be at least 1")
	case j.batchConcurrency < 1 || j.maxBackground < 1:
		return usagef("--batch-concurrency and --max-background must be at least 1")
	}
	return nil
}

// checkStore refuses --files-dir with a PostgreSQL store, which keeps the
// files itself.
func (j *jobFlags) checkStore(store string) error {
	if isStoreURL(store) && j.filesDir != "" {
		return usagef("--files-dir: with a PostgreSQL store the files of the Files and Batch APIs are kept in the database, where every replica finds them; drop --files-dir")
	}
	return nil
}

// open opens the files of the Files API: in the PostgreSQL store, shared
// by every replica, or in a directory, created when missing, by default
// beside the SQLite store's file.
func (j *jobFlags) open(spec string, store runStore) (files.Store, error) {
	if db, ok := store.(*postgres.DB); ok {
		return db.Files(j.filesLimit), nil
	}
	if j.filesDir == "" {
		j.filesDir = "tpo-files"
		if isStoreFile(spec) {
			j.filesDir = filepath.Join(filepath.Dir(spec), "tpo-files")
		}
	}
	d, err := files.Open(j.filesDir, j.filesLimit)
	if err != nil {
		return nil, fmt.Errorf("--files-dir %s: %w", j.filesDir, err)
	}
	return d, nil
}

// resumeJobs takes over the jobs a tpo serve of this machine left when it
// ended: its background responses fail, saying so; its batches continue
// here.
func resumeJobs(ctx context.Context, env *environ, srv *server.Server) error {
	failed, resumed, err := srv.ResumeJobs(ctx, proc.Alive)
	if err != nil {
		return fmt.Errorf("store: taking over the jobs of ended processes: %w", err)
	}
	if len(failed) > 0 {
		fmt.Fprintf(env.stderr, "tpo serve: %s left unfinished by a tpo serve that ended marked as failed (or cancelled, as asked): %s\n",
			plural(len(failed), "background response", "background responses"), idList(failed, maxListed))
	}
	if len(resumed) > 0 {
		fmt.Fprintf(env.stderr, "tpo serve: continuing %s left by a tpo serve that ended: %s\n",
			plural(len(resumed), "batch", "batches"), idList(resumed, maxListed))
	}
	return nil
}

// shutdownJobs ends the server's background work: batches stop at once
// (the next tpo serve continues them), background responses get until
// ctx ends, then are cancelled and stored as failed.
func shutdownJobs(ctx context.Context, env *environ, srv *server.Server) error {
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(env.stderr, "tpo serve: background responses still running were cancelled (stored as failed)\n")
		return nil
	}
	return err
}

// byteSize writes n bytes as people read them: 512 B, 3.2 MiB, 1 GiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + "KMGTPE"[i:i+1] + "iB"
}
