package proc

import (
	"os"
	"time"

	"github.com/tpoproject/tpo"
)

// Owner is a process of this host as an owner, for tests.
func Owner(pid int, started time.Time) tpo.Owner {
	host, _ := os.Hostname()
	return tpo.Owner{Host: host, PID: pid, Started: started}
}
