//go:build !unix

package reward

import "os/exec"

// killGroup is a no-op where process groups are not available: cancelling
// cmd kills the shell only.
func killGroup(cmd *exec.Cmd) {}
