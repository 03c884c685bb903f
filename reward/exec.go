package reward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
)

// DefaultExecTimeout bounds one run of a reward command.
const DefaultExecTimeout = 60 * time.Second

// stderrTail is how much of a failed command's standard error is reported.
const stderrTail = 2048

// ExecOptions configures an Exec scorer.
type ExecOptions struct {
	// Command is run with `sh -c Command`.
	Command string
	// Timeout bounds one run (default 60s). When it passes, the command's
	// whole process group is killed.
	Timeout time.Duration
	// Dir is the working directory (default: the current one).
	Dir string
	// Env holds extra KEY=VALUE variables added to the environment.
	Env    []string
	Logger *slog.Logger
}

// Exec scores responses with a user command. Each Score call runs the
// command once with `sh -c` and writes to its standard input the JSON object
//
//	{"prompt": "<last user turn>", "messages": [{"role": ..., "content": ...}, ...], "responses": ["...", ...]}
//
// The command must print a JSON array holding one number per response, in
// order, and exit with status 0. Anything it writes to standard error is
// shown when it fails. It is safe for concurrent use; concurrent calls run
// separate processes.
type Exec struct {
	command string
	timeout time.Duration
	dir     string
	env     []string
	log     *slog.Logger
}

// NewExec returns a scorer that runs opts.Command.
func NewExec(opts ExecOptions) (*Exec, error) {
	if strings.TrimSpace(opts.Command) == "" {
		return nil, errors.New("reward: no reward command given")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("reward: negative timeout %v", opts.Timeout)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultExecTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Exec{command: opts.Command, timeout: timeout, dir: opts.Dir, env: opts.Env, log: log}, nil
}

// execInput is what a reward command reads.
type execInput struct {
	Prompt    string        `json:"prompt"`
	Messages  []tpo.Message `json:"messages"`
	Responses []string      `json:"responses"`
}

// Score implements tpo.Scorer.
func (e *Exec) Score(ctx context.Context, messages []tpo.Message, responses []string) ([]float64, error) {
	if len(responses) == 0 {
		return []float64{}, nil
	}
	if messages == nil {
		messages = []tpo.Message{}
	}
	in, err := json.Marshal(execInput{Prompt: lastUser(messages), Messages: messages, Responses: responses})
	if err != nil {
		return nil, fmt.Errorf("reward command %q: encoding input: %w", e.command, err)
	}
	rctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, "sh", "-c", e.command)
	cmd.Dir = e.dir
	if len(e.env) > 0 {
		cmd.Env = append(os.Environ(), e.env...)
	}
	cmd.Stdin = bytes.NewReader(in)
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	killGroup(cmd)
	// Stop waiting for output a moment after the kill, in case something
	// outside the process group still holds the pipes.
	cmd.WaitDelay = time.Second

	start := time.Now()
	err = cmd.Run()
	e.log.Debug("reward command finished", "command", e.command, "responses", len(responses),
		"elapsed", time.Since(start), "err", err)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("reward command %q: %w", e.command, ctx.Err())
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("reward command %q: timed out after %v; its process group was killed%s",
			e.command, e.timeout, stderr.suffix())
	case err != nil:
		var xerr *exec.ExitError
		if errors.As(err, &xerr) {
			return nil, fmt.Errorf("reward command %q: %s%s", e.command, xerr.ProcessState, stderr.suffix())
		}
		return nil, fmt.Errorf("reward command %q: %w%s", e.command, err, stderr.suffix())
	}
	scores, err := decodeExecOutput(stdout.Bytes(), len(responses))
	if err != nil {
		return nil, fmt.Errorf("reward command %q: %w%s", e.command, err, stderr.suffix())
	}
	return scores, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max       int
	buf       []byte
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
	return n, nil
}

// suffix renders the tail for an error message: "" when empty.
func (t *tailBuffer) suffix() string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(t.buf), "�"))
	if s == "" {
		return ""
	}
	if t.truncated {
		s = "…" + s
	}
	return "; stderr: " + s
}
