// Package proc identifies this process as the owner of the runs it writes,
// and tells whether the owner of a run still runs.
package proc

import (
	"fmt"
	"os"
	"time"

	"github.com/tpoproject/tpo"
)

// startSlack is how far apart two readings of one process's start time may
// be: the boot time they are counted from is given in whole seconds, and
// moves with adjustments of the clock.
const startSlack = 2 * time.Second

// Self returns this process as the owner of the runs it writes.
func Self() (tpo.Owner, error) {
	host, err := os.Hostname()
	if err != nil {
		return tpo.Owner{}, fmt.Errorf("host name: %w", err)
	}
	pid := os.Getpid()
	started, _, _ := lookup(pid)
	if started.IsZero() {
		started = time.Now()
	}
	return tpo.Owner{Host: host, PID: pid, Started: started.UTC()}, nil
}

// Alive reports whether o, a process on this machine, still runs: a
// process with its id exists and, where its start time can be read
// (Linux), started when o says, not later (its id reused). Where neither
// can be checked it reports true: a run is never taken from a process that
// may be writing it.
func Alive(o tpo.Owner) bool {
	if o.PID <= 0 {
		return false
	}
	started, running, known := lookup(o.PID)
	switch {
	case !known:
		return exists(o.PID)
	case !running:
		return false
	case started.IsZero():
		return true
	}
	d := started.Sub(o.Started)
	return d < startSlack && d > -startSlack
}
