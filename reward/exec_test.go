package reward

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

func newTestExec(t *testing.T, command string, timeout time.Duration) *Exec {
	t.Helper()
	s, err := NewExec(ExecOptions{Command: command, Timeout: timeout, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExecSuccess(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.json")
	s, err := NewExec(ExecOptions{
		Command: `cat > "$IN"; echo '[1.5, -2, 3e1]'`,
		Env:     []string{"IN=" + in},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := values(s.Score(context.Background(), testConversation, testResponses))
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{1.5, -2, 30}; !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	var input struct {
		Prompt    string        `json:"prompt"`
		Messages  []tpo.Message `json:"messages"`
		Responses []string      `json:"responses"`
	}
	if err := json.Unmarshal(data, &input); err != nil {
		t.Fatalf("stdin is not JSON: %v: %s", err, data)
	}
	if input.Prompt != "Is water wet?" {
		t.Errorf("prompt = %q, want the last user turn", input.Prompt)
	}
	if !slices.Equal(input.Messages, testConversation) {
		t.Errorf("messages = %v, want %v", input.Messages, testConversation)
	}
	if !slices.Equal(input.Responses, testResponses) {
		t.Errorf("responses = %q, want %q", input.Responses, testResponses)
	}
	if want := `{"prompt":"Is water wet?","messages":[`; !strings.HasPrefix(string(data), want) {
		t.Errorf("stdin = %s, want it to start with %s", data, want)
	}
}

func TestExecEmpty(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	s := newTestExec(t, "touch "+marker+"; echo '[]'", 0)
	got, err := values(s.Score(context.Background(), testConversation, nil))
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("Score(no responses) = %#v, %v; want an empty slice", got, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran for no responses")
	}
}

func TestExecErrors(t *testing.T) {
	tests := []struct {
		name    string
		command string
		want    []string
	}{
		{"wrong length", `cat >/dev/null; echo '[1, 2]'`, []string{"2 numbers for 3 responses"}},
		{"not JSON", `cat >/dev/null; echo 'scores: 1 2 3'`, []string{"not a JSON array"}},
		{"non-number", `cat >/dev/null; echo '[1, "x", 3]'`, []string{"element 1 is not a number"}},
		{"nothing", `cat >/dev/null`, []string{"printed nothing"}},
		{
			"non-zero exit", `cat >/dev/null; echo 'model not found: rm.bin' >&2; exit 3`,
			[]string{"exit status 3", "stderr: model not found: rm.bin"},
		},
		{
			"long stderr is cut to its tail", `cat >/dev/null; i=0; while [ $i -lt 500 ]; do echo "line $i of noise" >&2; i=$((i+1)); done; exit 1`,
			[]string{"exit status 1", "…", "line 499 of noise"},
		},
		{"not found", `no-such-reward-command-xyz`, []string{"exit status 127", "not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestExec(t, tt.command, 0)
			_, err := s.Score(context.Background(), testConversation, testResponses)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, strconv.Quote(tt.command)) {
				t.Errorf("error %q does not name the command", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if len(msg) > 4*stderrTail {
				t.Errorf("error is %d bytes long, want the stderr tail capped", len(msg))
			}
		})
	}
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("process groups are unix-only")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The shell starts a background child that ignores stdin and would
	// outlive the shell if only the shell were killed.
	cmd := `sleep 30 & echo $! > ` + pidFile + `; echo started >&2; wait`
	s := newTestExec(t, cmd, 200*time.Millisecond)
	start := time.Now()
	_, err := s.Score(context.Background(), testConversation, testResponses)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("no error from a command that outlived its timeout")
	}
	for _, w := range []string{"timed out after 200ms", "process group was killed", "stderr: started"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if elapsed > 5*time.Second {
		t.Errorf("Score took %v, want it to return soon after the timeout", elapsed)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	// The child must be gone (it may linger briefly as a zombie of init).
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) || isZombie(pid) {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("background child %d still running after the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isZombie reports whether pid has exited but not been reaped (Linux).
func isZombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestExecContextCancel(t *testing.T) {
	s := newTestExec(t, "sleep 30", time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Score(ctx, testConversation, testResponses)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's error", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Score took %v after the context ended", time.Since(start))
	}
}

func TestNewExecOptions(t *testing.T) {
	if _, err := NewExec(ExecOptions{Command: "  "}); err == nil {
		t.Error("no error for an empty command")
	}
	if _, err := NewExec(ExecOptions{Command: "true", Timeout: -time.Second}); err == nil {
		t.Error("no error for a negative timeout")
	}
}

// TestExecOutputLimit: a command that prints without end is killed at the
// limit, and the error names the command and the limit; output up to the
// limit is read.
func TestExecOutputLimit(t *testing.T) {
	const limit = 64 << 10
	s, err := NewExec(ExecOptions{Command: `cat >/dev/null; echo '[1,'; yes 2,`, MaxOutput: limit, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Score(context.Background(), testConversation, testResponses)
	if err == nil {
		t.Fatal("no error for endless output")
	}
	for _, w := range []string{strconv.Quote(`cat >/dev/null; echo '[1,'; yes 2,`), "more than the limit of 64 KiB", "--reward-max-output"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the command ran %v: it was not killed at the limit", d)
	}

	// Just under the limit is fine: the array padded with spaces.
	pad := strings.Repeat(" ", limit-20)
	s, err = NewExec(ExecOptions{Command: `cat >/dev/null; printf '[1,2,3]` + pad + `'`, MaxOutput: limit})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := values(s.Score(context.Background(), testConversation, testResponses)); err != nil || !slices.Equal(got, []float64{1, 2, 3}) {
		t.Errorf("output under the limit: %v, %v", got, err)
	}
	if _, err := NewExec(ExecOptions{Command: "true", MaxOutput: -1}); err == nil {
		t.Error("no error for a negative output limit")
	}
	if s, _ := NewExec(ExecOptions{Command: "true"}); s.maxOutput != 1<<20 {
		t.Errorf("default output limit %d, want 1 MiB", s.maxOutput)
	}
}

// TestExecEnvironment: the command does not get tpo's or OpenAI's secrets
// from the environment, unless passed on in Env; other variables it does.
func TestExecEnvironment(t *testing.T) {
	t.Setenv("TPO_API_KEYS", "serve-secret")
	t.Setenv("TPO_POLICY_API_KEY", "policy-secret")
	t.Setenv("OPENAI_API_KEY", "openai-secret")
	t.Setenv("TPO_REWARD_API_KEY", "reward-secret")
	t.Setenv("REWARD_MODEL_DIR", "/models/rm")
	out := filepath.Join(t.TempDir(), "env")
	s, err := NewExec(ExecOptions{Command: `cat >/dev/null; env > "$OUT"; echo '[1,2,3]'`,
		Env: []string{"OUT=" + out, "TPO_REWARD_API_KEY=reward-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Score(context.Background(), testConversation, testResponses); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := string(data)
	for _, secret := range []string{"serve-secret", "policy-secret", "openai-secret"} {
		if strings.Contains(env, secret) {
			t.Errorf("the command's environment holds %q:\n%s", secret, env)
		}
	}
	for _, want := range []string{"REWARD_MODEL_DIR=/models/rm", "TPO_REWARD_API_KEY=reward-secret", "PATH="} {
		if !strings.Contains(env, want) {
			t.Errorf("the command's environment lacks %s", want)
		}
	}
}

func TestSecretEnv(t *testing.T) {
	for kv, want := range map[string]bool{
		"TPO_API_KEYS=a": true, "TPO_POLICY_API_KEY=b": true, "tpo_x=1": true, "OPENAI_API_KEY=c": true,
		"OPENAI_BASE_URL=http://x": false, "PATH=/bin": false, "HOME=/root": false, "XTPO_A=1": false, "OPENAI_API_KEYS=1": false,
	} {
		if got := secretEnv(kv); got != want {
			t.Errorf("secretEnv(%q) = %v, want %v", kv, got, want)
		}
	}
}
