package server

import (
	"context"
	"fmt"
	"time"

	"github.com/tpoproject/tpo"
)

// InterruptAbandoned marks as interrupted, at `at`, the runs that
// processes of self's host left unfinished when they ended (killed,
// crashed): alive tells whether an owner still runs. Runs of live
// processes, of other hosts (which cannot be checked from here) and
// without an owner are left alone. It returns the ids of the runs marked.
// tpo serve calls it when it starts, so that requests a killed server was
// optimizing do not look in progress forever.
func InterruptAbandoned(ctx context.Context, store tpo.Interrupter, self tpo.Owner, alive func(tpo.Owner) bool, at time.Time) ([]string, error) {
	runs, err := store.UnfinishedRuns(ctx, self.Host)
	if err != nil {
		return nil, err
	}
	var marked []string
	for _, r := range runs {
		o := *r.Owner
		if o.PID == self.PID && o.Started.Equal(self.Started) || alive(o) {
			continue
		}
		reason := fmt.Sprintf("interrupted: the process that wrote the run (%s, started %s) ended before it finished", o, o.Started.Local().Format(time.DateTime))
		ok, err := store.InterruptRun(ctx, r.ID, at, reason)
		if err != nil {
			return marked, err
		}
		if ok {
			marked = append(marked, r.ID)
		}
	}
	return marked, nil
}
