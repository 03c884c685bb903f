package proc

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

func TestSelfIsAlive(t *testing.T) {
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if self.PID != os.Getpid() || self.Host == "" || self.Started.IsZero() || self.Started.After(time.Now()) {
		t.Errorf("Self() = %+v", self)
	}
	if !Alive(self) {
		t.Errorf("Alive(%+v) = false for this process", self)
	}
	if runtime.GOOS == "linux" {
		// The same id with another start: a later process that got it.
		later := self
		later.Started = self.Started.Add(-time.Hour)
		if Alive(later) {
			t.Error("a process that reuses the id counts as the owner")
		}
	}
}

// TestEndedProcess: a process that was killed (its zombie collected or
// not) is not alive.
func TestEndedProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no signals")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	started, _, _ := lookup(cmd.Process.Pid)
	if started.IsZero() {
		started = time.Now()
	}
	owner := Owner(cmd.Process.Pid, started)
	if !Alive(owner) {
		t.Fatalf("a running child counts as ended: %+v", owner)
	}
	cmd.Process.Kill()
	// Not collected yet: a zombie.
	if runtime.GOOS == "linux" {
		for end := time.Now().Add(5 * time.Second); Alive(owner) && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		if Alive(owner) {
			t.Error("a killed child not yet collected (a zombie) counts as running")
		}
	}
	cmd.Wait()
	if Alive(owner) {
		t.Error("a killed child counts as running")
	}
	if Alive(Owner(0, started)) || Alive(Owner(-1, started)) {
		t.Error("pid 0 or -1 counts as running")
	}
}
