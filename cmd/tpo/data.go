package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/tpoproject/tpo/benchdata"
)

const dataUsage = `usage: tpo data list
       tpo data get NAME...

Gets the evaluation sets of the TPO paper: 'get' downloads a set's files
from their canonical locations (raw files at pinned commits), checks their
sha256, converts them to tpo's JSON Lines and caches them under the user
cache directory; 'list' shows the sets, their licences and what is cached.

A set's name (or NAME:KEY for its other files, such as
arena_hard_v0.1:baseline) works wherever tpo reads a data file: --data
alpaca_eval. A name not yet cached is got first.

TPO_DATA_MIRROR, a directory or an http(s) URL holding NAME/FILE (as this
project's ../shared/data does), replaces the canonical locations.
`

func cmdData(ctx context.Context, args []string, env *environ) error {
	return runSubcommand(ctx, args, env, dataUsage, "command", []subcommand{
		{"list", dataList}, {"get", dataGet},
	})
}

// dataStore is the cache of the data sets, with the mirror of
// TPO_DATA_MIRROR.
func dataStore(env *environ) (*benchdata.Store, error) {
	dir, err := benchdata.DefaultDir()
	if err != nil {
		return nil, err
	}
	return &benchdata.Store{Dir: dir, Mirror: os.Getenv(benchdata.MirrorEnv), Log: env.log}, nil
}

func dataList(_ context.Context, args []string, env *environ) error {
	if len(args) > 0 {
		return usagef("tpo data list takes no arguments")
	}
	st, err := dataStore(env)
	if err != nil {
		return err
	}
	w := env.stdout
	for _, s := range benchdata.Sets() {
		fmt.Fprintf(w, "%s: %s\n", s.Name, s.Title)
		fmt.Fprintf(w, "  licence: %s\n", s.Licence)
		if s.Note != "" {
			fmt.Fprintf(w, "  note: %s\n", s.Note)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range s.Files {
			r := benchdata.Ref{Set: s, File: f}
			state := "not cached"
			if st.Cached(r) {
				state = st.Path(r)
			}
			fmt.Fprintf(tw, "  --data %s\t%d rows\t%s\n", r, f.Rows, state)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "cache: %s\n", st.Dir)
	if st.Mirror != "" {
		fmt.Fprintf(w, "mirror (%s): %s\n", benchdata.MirrorEnv, st.Mirror)
	}
	return nil
}

func dataGet(ctx context.Context, args []string, env *environ) error {
	if len(args) == 0 {
		return usagef("give the names of the sets to get (see tpo data list): %s", strings.Join(setNames(), ", "))
	}
	var refs []benchdata.Ref
	for _, name := range args {
		rs, err := refsOf(name)
		if err != nil {
			return usageError{err}
		}
		refs = append(refs, rs...)
	}
	st, err := dataStore(env)
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range refs {
		path, fetched, err := st.Get(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed++
			fmt.Fprintf(env.stderr, "%v\n", err)
			continue
		}
		how := "cached already"
		if fetched {
			how = "fetched, sha256 checked"
		}
		fmt.Fprintf(env.stdout, "%s: %s (%s)\n", r, path, how)
	}
	if failed > 0 {
		return fmt.Errorf("%s of %d could not be got", plural(failed, "file", "files"), len(refs))
	}
	return nil
}

// refsOf returns the files a name given to tpo data get stands for: every
// file of a set, or the one file NAME:KEY names.
func refsOf(name string) ([]benchdata.Ref, error) {
	if strings.Contains(name, ":") {
		r, ok := benchdata.Lookup(name)
		if !ok {
			return nil, benchdata.UnknownName(name)
		}
		return []benchdata.Ref{r}, nil
	}
	for _, s := range benchdata.Sets() {
		if s.Name == name {
			refs := make([]benchdata.Ref, len(s.Files))
			for i, f := range s.Files {
				refs[i] = benchdata.Ref{Set: s, File: f}
			}
			return refs, nil
		}
	}
	return nil, benchdata.UnknownName(name)
}

func setNames() []string {
	var names []string
	for _, s := range benchdata.Sets() {
		names = append(names, s.Name)
	}
	return names
}

// resolveData turns the value of a data flag into a file path: a file that
// exists is itself; a set's name (alpaca_eval, arena_hard_v0.1:baseline) is
// its cached file, got first when it is not cached. Anything else is left
// for the reader to fail on, with a hint when it looks like a name.
func resolveData(ctx context.Context, env *environ, flagName, value string) (string, error) {
	if value == "" || value == "-" {
		return value, nil
	}
	if _, err := os.Stat(value); err == nil {
		return value, nil
	}
	r, ok := benchdata.Lookup(value)
	if !ok {
		if !strings.ContainsAny(value, `/\.`) {
			return "", usagef("--%s %s: no such file, and not a data set tpo knows (%s)", flagName, value, strings.Join(benchdata.Names(), ", "))
		}
		return value, nil
	}
	st, err := dataStore(env)
	if err != nil {
		return "", err
	}
	path, fetched, err := st.Get(ctx, r)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagName, err)
	}
	if fetched {
		fmt.Fprintf(env.stderr, "tpo: --%s %s: fetched into the cache: %s (sha256 checked; licence: %s)\n", flagName, value, path, r.Set.Licence)
	}
	return path, nil
}

// resolveDataFlags resolves the values of several data flags in place.
func resolveDataFlags(ctx context.Context, env *environ, flags map[string]*string) error {
	for name, v := range flags {
		p, err := resolveData(ctx, env, name, *v)
		if err != nil {
			return err
		}
		*v = p
	}
	return nil
}
