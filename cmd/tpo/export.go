package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/internal/atomicfile"
	"github.com/tpoproject/tpo/report"
)

const exportUsage = `usage: tpo export --format FORMAT [flags] RUN

Writes the answers of a run for an evaluation tool. RUN is a results file
written by 'tpo run --out' (or any JSON Lines file of {id, response}
objects) or a run id in the store. Formats:

  alpacaeval      AlpacaEval model_outputs.json: a JSON array of
                  {instruction, output, generator, dataset}
  arenahard       Arena-Hard-Auto answers (the format of its current
                  releases): {uid, ans_id, model, messages, tstamp} per line
  arenahard-v0.1  Arena-Hard-Auto answers of releases before v2.0:
                  {question_id, answer_id, model_id, choices, tstamp} per line
  jsonl           {id, prompt, response} per line

Failed and unfinished items are left out (with a count on stderr) unless
--include-failed is given.

Flags:
`

func cmdExport(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	store := fs.String("store", "tpo.db", storeHelp)
	format := fs.String("format", "", "alpacaeval, arenahard, arenahard-v0.1 or jsonl (required)")
	out := fs.String("out", "", "output `file`; - for stdout (required)")
	generator := fs.String("generator", "", "model `name` written in the answers (default the run's label: mode-N-D, or the file name)")
	data := fs.String("data", "", "the run's input dataset `file` (or a set's name, tpo data list); alpacaeval takes each item's \"dataset\" field from it, joined by id (default \"tpo\")")
	idField := fs.String("id-field", "", "the --data field holding the item id, as given to tpo run")
	includeFailed := fs.Bool("include-failed", false, "also export failed items (with their best response so far, possibly empty)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), exportUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *format == "" {
		return usagef("give --format alpacaeval, arenahard, arenahard-v0.1 or jsonl")
	}
	f, err := report.ParseFormat(*format)
	if err != nil {
		return usagef("--format: %v", err)
	}
	if *out == "" {
		return usagef("give --out FILE (or - for stdout)")
	}
	if len(pos) != 1 {
		return usagef("give exactly one RUN, got %d", len(pos))
	}

	if *data, err = resolveData(ctx, env, "data", *data); err != nil {
		return err
	}
	var datasets map[string]string
	if *data != "" {
		if datasets, err = readDatasets(*data, *idField); err != nil {
			return err
		}
	}

	runs, err := openRuns(ctx, pos, *store)
	if err != nil {
		return err
	}
	defer runs.close()
	ref := runs.refs[0]
	if *generator == "" {
		*generator = ref.label
	}
	missing := 0
	opts := report.ExportOptions{Generator: *generator, Time: time.Now()}
	if datasets != nil {
		opts.Dataset = func(id string) string {
			ds, ok := datasets[id]
			if !ok {
				missing++
			}
			return ds
		}
	}

	var written, failed, pending int
	export := func(w io.Writer) error {
		exp, err := report.NewExporter(w, f, opts)
		if err != nil {
			return err
		}
		pending, err = runs.each(ctx, ref, func(r tpo.Result, msgs []tpo.Message) error {
			if r.Error != "" && !*includeFailed {
				failed++
				return nil
			}
			written++
			return exp.Write(report.Answer{ID: r.ID, Prompt: r.Prompt, Messages: msgs, Response: r.Response})
		})
		if err != nil {
			return err
		}
		return exp.Close()
	}
	if *out == "-" {
		err = export(env.stdout)
	} else {
		err = atomicfile.Write(*out, export)
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		fmt.Fprintf(env.stderr, "tpo export: skipped %s (--include-failed exports %s)\n", plural(failed, "failed item", "failed items"), pick(failed, "it", "them"))
	}
	if pending > 0 {
		fmt.Fprintf(env.stderr, "tpo export: skipped %s (run the same tpo run command again to finish %s)\n", plural(pending, "unfinished item", "unfinished items"), pick(pending, "it", "them"))
	}
	if missing > 0 {
		fmt.Fprintf(env.stderr, "tpo export: %s no record in %s; %s dataset is \"tpo\"\n", plural(missing, "item has", "items have"), *data, pick(missing, "its", "their"))
	}
	if *out != "-" {
		fmt.Fprintf(env.stderr, "wrote %s to %s (%s, generator %q)\n", plural(written, "answer", "answers"), *out, f, *generator)
	}
	return nil
}

// readDatasets maps the ids of a dataset's records to their "dataset"
// field. Records that cannot be read or have no such string field are
// left out.
func readDatasets(path, idField string) (map[string]string, error) {
	r, err := dataset.Open(path, dataset.Options{IDField: idField})
	if err != nil {
		return nil, usageError{fmt.Errorf("--data: %w", err)}
	}
	defer r.Close()
	m := map[string]string{}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		var de *dataset.Error
		if errors.As(err, &de) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		var fields struct {
			Dataset json.RawMessage `json:"dataset"`
		}
		if json.Unmarshal(rec.Raw, &fields) != nil {
			continue
		}
		var ds string
		if json.Unmarshal(fields.Dataset, &ds) == nil && ds != "" {
			m[rec.Item.ID] = ds
		}
	}
}
