//go:build unix

package proc

import (
	"errors"
	"syscall"
)

// exists reports whether a process with id pid exists (signal 0 checks
// without sending anything; EPERM means it exists but is not ours).
func exists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
