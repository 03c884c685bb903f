//go:build !linux

package proc

import "time"

// lookup cannot tell outside Linux.
func lookup(pid int) (started time.Time, running, known bool) { return time.Time{}, false, false }
