package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/results"
)

// answerSource is where an eval command reads the answers it scores: a
// results file (--results FILE), or a run of a store (--store S RUN),
// read as tpo export reads it (its finished items, in input order) and
// turned into the results lines tpo run --out would write.
type answerSource struct {
	results string // --results
	store   string // --store
	run     string // RUN, when read from a store
	label   string // the stored run's label (mode-N-D), once read
}

// register adds --results and --store to fs; what ends --results' help.
func (src *answerSource) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&src.results, "results", "", "results `file` of tpo run --out, or JSON Lines of {id, response}"+what)
	fs.StringVar(&src.store, "store", "", "instead of --results, read the answers of the run RUN (the argument) from this run store: a SQLite `file` or postgres://USER:PASSWORD@HOST:PORT/DATABASE (a RUN without --store is read from tpo.db)")
}

// given reports whether answers were named: --results, --store or RUN.
func (src *answerSource) given(pos []string) bool {
	return src.results != "" || src.store != "" || len(pos) > 0
}

// set settles the source from the flags and the positional arguments:
// --results FILE alone, or a RUN id with --store S (tpo.db by default, as
// for tpo report and tpo export).
func (src *answerSource) set(pos []string, cmd string) error {
	switch {
	case src.results != "" && src.store != "":
		return usagef("give either --results FILE or --store S RUN, not both")
	case src.results != "" && len(pos) > 0:
		return usagef("unexpected argument %q: with --results FILE, give no RUN (see 'tpo %s -h')", pos[0], cmd)
	case src.results != "":
		return nil
	case len(pos) > 1:
		return usagef("give one RUN to score, got %d: %s", len(pos), strings.Join(pos, " "))
	case len(pos) == 0 && src.store != "":
		return usagef("--store %s: give the RUN to score after the flags ('tpo ui --store ...' lists the runs)", storeName(src.store))
	case len(pos) == 0:
		return usagef("give --results FILE, or --store S and the RUN to score")
	}
	src.run = pos[0]
	if src.store == "" {
		src.store = "tpo.db"
	}
	return nil
}

// String names the source in messages.
func (src *answerSource) String() string {
	if src.run != "" {
		return fmt.Sprintf("run %s of %s", src.run, storeName(src.store))
	}
	return src.results
}

// name is the answers' model name when none is given: the stored run's
// label, as tpo export's default generator, or the results file's name
// without its extension.
func (src *answerSource) name() string {
	if src.run != "" {
		return src.label
	}
	return modelName("", src.results)
}

// each calls fn with every results line of the source, in order. A run's
// unfinished items are left out, with a warning: they count as unanswered.
func (src *answerSource) each(ctx context.Context, env *environ, fn func(results.Line) error) error {
	if src.run == "" {
		if err := results.Read(src.results, fn); err != nil {
			return inputError("results", err)
		}
		return nil
	}
	runs, err := openRuns(ctx, []string{src.run}, src.store)
	if err != nil {
		return err
	}
	defer runs.close()
	ref := runs.refs[0]
	src.label = ref.label
	pending, err := runs.each(ctx, ref, func(r tpo.Result, _ []tpo.Message) error { return fn(results.FromResult(r)) })
	if err != nil {
		return err
	}
	if pending > 0 {
		fmt.Fprintf(env.stderr, "warning: %s of %s %s unfinished and left out (run the same tpo run command again to finish %s)\n",
			plural(pending, "item", "items"), ref.source(), pick(pending, "is", "are"), pick(pending, "it", "them"))
	}
	return nil
}
