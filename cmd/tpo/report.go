package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/atomicfile"
	"github.com/tpoproject/tpo/report"
	"github.com/tpoproject/tpo/results"
)

const reportUsage = `usage: tpo report [flags] RUN [RUN...]

Writes a report on one or more runs: reward curves by step, the gain over
the best initial sample, tokens and requests per prompt, latency per stage,
update samples that could not be parsed, and failed items; for several runs
(say TPO, best of N and revision on the same data), a comparison.

RUN is a results file written by 'tpo run --out' (when a file of that name
exists) or a run id in the store. The report is one self-contained HTML
file, or Markdown with SVG charts beside it (--format md).

Flags:
`

func cmdReport(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	store := fs.String("store", "tpo.db", storeHelp)
	out := fs.String("out", "", "output `file` (default report.html, or report.md with --format md; - for stdout with html)")
	format := fs.String("format", "html", "html or md (Markdown, with SVG charts written beside it)")
	title := fs.String("title", "", "title of the report (default \"TPO report\")")
	var labels listFlag
	fs.Var(&labels, "label", "`name` of a run in the report, in the order of the RUNs; repeatable (default mode-N-D for a stored run, the file name for a results file)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), reportUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("give at least one RUN (a run id or a results file)")
	}
	if len(labels.vals) > len(pos) {
		return usagef("%s for %s", plural(len(labels.vals), "label", "labels"), plural(len(pos), "run", "runs"))
	}
	if *format != "html" && *format != "md" {
		return usagef("--format: want html or md, got %q", *format)
	}
	if *out == "" {
		*out = "report." + *format
	}
	if *out == "-" && *format == "md" {
		return usagef("--format md writes SVG files beside the report; give --out FILE")
	}

	runs, err := openRuns(ctx, pos, *store)
	if err != nil {
		return err
	}
	defer runs.close()
	runs.label(labels.vals)

	var sums []report.Summary
	for _, r := range runs.refs {
		b := report.NewBuilder(r.label)
		pending, err := runs.each(ctx, r, func(res tpo.Result, _ []tpo.Message) error {
			b.Add(res)
			return nil
		})
		if err != nil {
			return err
		}
		s := b.Summary()
		s.Source, s.Pending = r.source(), pending
		if r.cfg != nil {
			s.Mode, s.Width, s.Depth = r.cfg.Mode, r.cfg.Width, r.cfg.Steps()
		}
		sums = append(sums, s)
	}

	opts := report.Options{Title: *title}
	if *out == "-" {
		return report.WriteHTML(env.stdout, sums, opts)
	}
	var page bytes.Buffer
	if *format == "md" {
		opts.ImagePrefix = strings.TrimSuffix(filepath.Base(*out), filepath.Ext(*out)) + "-"
		charts, err := report.WriteMarkdown(&page, sums, opts)
		if err != nil {
			return err
		}
		for _, c := range charts {
			path := filepath.Join(filepath.Dir(*out), report.ChartFile(opts.ImagePrefix, c))
			if err := atomicfile.WriteBytes(path, c.SVG); err != nil {
				return err
			}
		}
	} else if err := report.WriteHTML(&page, sums, opts); err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(*out, page.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "wrote %s (%s)\n", *out, plural(len(sums), "run", "runs"))
	return nil
}

// runRef is one RUN argument: a results file or a run of the store.
type runRef struct {
	file  string      // the results file, or ""
	id    string      // the run id, when stored
	cfg   *tpo.Config // the stored run's settings, when known
	label string
}

func (r runRef) source() string {
	if r.file != "" {
		return r.file
	}
	return "run " + r.id
}

// runSet holds the runs named on a command line and the store they need.
type runSet struct {
	db        runStore
	storePath string
	refs      []runRef
}

// openRuns resolves RUN arguments: an existing file is a results file,
// anything else a run id in the store, which is opened only if needed.
func openRuns(ctx context.Context, args []string, storePath string) (*runSet, error) {
	rs := &runSet{storePath: storePath}
	for _, arg := range args {
		if fi, err := os.Stat(arg); err == nil && !fi.IsDir() {
			base := filepath.Base(arg)
			rs.refs = append(rs.refs, runRef{file: arg, label: strings.TrimSuffix(base, filepath.Ext(base))})
			continue
		}
		if rs.db == nil {
			if _, err := os.Stat(storePath); err != nil && isStoreFile(storePath) {
				rs.close()
				return nil, usagef("%q is neither a results file nor a run: no store %s", arg, storePath)
			}
			db, err := openStore(ctx, storePath)
			if err != nil {
				rs.close()
				return nil, err
			}
			rs.db = db
		}
		run, err := rs.db.GetRun(ctx, arg)
		if errors.Is(err, tpo.ErrNotFound) {
			rs.close()
			return nil, usagef("%q is neither a results file nor a run in %s", arg, storeName(storePath))
		}
		if err != nil {
			rs.close()
			return nil, err
		}
		ref := runRef{id: run.ID, label: run.ID}
		if cfg, ok := runConfig(run.Config); ok {
			ref.cfg = &cfg
			ref.label = fmt.Sprintf("%s-%d-%d", cfg.Mode, cfg.Width, cfg.Steps())
		}
		rs.refs = append(rs.refs, ref)
	}
	return rs, nil
}

func (rs *runSet) close() {
	if rs.db != nil {
		rs.db.Close()
	}
}

// label applies labels given on the command line, in order, and makes the
// others unique by numbering repeats.
func (rs *runSet) label(given []string) {
	seen := map[string]int{}
	for i := range rs.refs {
		if i < len(given) {
			rs.refs[i].label = given[i]
		}
	}
	for i := range rs.refs {
		l := rs.refs[i].label
		seen[l]++
		if n := seen[l]; n > 1 && i >= len(given) {
			rs.refs[i].label = fmt.Sprintf("%s (%d)", l, n)
		}
	}
}

// each calls fn with every finished item of a run, in input order, and
// the conversation it answered; it returns how many items of a stored run
// are unfinished (and not passed to fn).
func (rs *runSet) each(ctx context.Context, r runRef, fn func(tpo.Result, []tpo.Message) error) (pending int, err error) {
	if r.file != "" {
		return 0, results.Read(r.file, func(l results.Line) error {
			msgs := l.Messages
			if len(msgs) == 0 && l.Prompt != "" {
				msgs = []tpo.Message{{Role: tpo.RoleUser, Content: l.Prompt}}
			}
			return fn(l.Result(), msgs)
		})
	}
	err = rs.db.Results(ctx, r.id, func(st tpo.ItemState) error {
		if !st.Done || st.Result == nil {
			pending++
			return nil
		}
		res := *st.Result
		if res.Prompt == "" {
			res.Prompt = st.Item.Prompt()
		}
		return fn(res, st.Item.Messages)
	})
	if err != nil {
		return pending, fmt.Errorf("run %s: %w", r.id, err)
	}
	return pending, nil
}

// runConfig finds the optimizer settings in a stored run's configuration:
// under settings.config (tpo run), config, or at the top level.
func runConfig(raw json.RawMessage) (tpo.Config, bool) {
	var doc struct {
		Settings struct {
			Config *tpo.Config `json:"config"`
		} `json:"settings"`
		Config *tpo.Config `json:"config"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return tpo.Config{}, false
	}
	for _, c := range []*tpo.Config{doc.Settings.Config, doc.Config} {
		if c != nil && c.Mode != "" {
			return *c, true
		}
	}
	var top tpo.Config
	if err := json.Unmarshal(raw, &top); err == nil && top.Mode != "" {
		return top, true
	}
	return tpo.Config{}, false
}
