//go:build unix

package reward

import (
	"os/exec"
	"syscall"
)

// killGroup makes cmd start in its own process group and makes cancelling
// it kill the whole group, so that the children of `sh -c` die too.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
