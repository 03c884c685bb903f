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

// DefaultExecMaxOutput bounds what a reward command may print in one run.
const DefaultExecMaxOutput = 1 << 20

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
	// Env holds extra KEY=VALUE variables added to the environment. The
	// command inherits this process's environment without the variables
	// that may hold tpo's or OpenAI's secrets (TPO_*, OPENAI_API_KEY): one
	// of them reaches the command only when given here.
	Env []string
	// MaxOutput bounds what one run may write to standard output, in bytes
	// (default DefaultExecMaxOutput, 1 MiB). A command that writes more is
	// killed and the call fails.
	MaxOutput int64
	Logger    *slog.Logger
}

// Exec scores responses with a user command. Each Score call runs the
// command once with `sh -c` and writes to its standard input the JSON object
//
//	{"prompt": "<last user turn>", "messages": [{"role": ..., "content": ...}, ...], "responses": ["...", ...]}
//
// The command must print a JSON array holding one number per response, in
// order (at most MaxOutput bytes), and exit with status 0. Anything it
// writes to standard error is shown when it fails. Its environment is
// tpo's without tpo's and OpenAI's secrets (see ExecOptions.Env). It is
// safe for concurrent use; concurrent calls run separate processes.
type Exec struct {
	command   string
	timeout   time.Duration
	dir       string
	env       []string
	maxOutput int64
	log       *slog.Logger
}

// NewExec returns a scorer that runs opts.Command.
func NewExec(opts ExecOptions) (*Exec, error) {
	if strings.TrimSpace(opts.Command) == "" {
		return nil, errors.New("reward: no reward command given")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("reward: negative timeout %v", opts.Timeout)
	}
	if opts.MaxOutput < 0 {
		return nil, fmt.Errorf("reward: negative output limit %d", opts.MaxOutput)
	}
	maxOutput := opts.MaxOutput
	if maxOutput == 0 {
		maxOutput = DefaultExecMaxOutput
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultExecTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Exec{command: opts.Command, timeout: timeout, dir: opts.Dir, env: opts.Env, maxOutput: maxOutput, log: log}, nil
}

// execInput is what a reward command reads.
type execInput struct {
	Prompt    string        `json:"prompt"`
	Messages  []tpo.Message `json:"messages"`
	Responses []string      `json:"responses"`
}

// Score implements tpo.Scorer. A command run costs no HTTP requests:
// Usage stays zero.
func (e *Exec) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	scores, err := e.run(ctx, messages, responses)
	return tpo.Scores{Values: scores}, err
}

// run runs the command once for responses.
func (e *Exec) run(ctx context.Context, messages []tpo.Message, responses []string) ([]float64, error) {
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
	cmd.Env = commandEnv(os.Environ(), e.env)
	cmd.Stdin = bytes.NewReader(in)
	// Output past the limit kills the command: it is not kept, and the
	// command does not run on for nothing.
	stdout := &capBuffer{max: e.maxOutput, over: cancel}
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout = stdout
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
	case stdout.exceeded:
		return nil, fmt.Errorf("reward command %q: printed more than the limit of %s on standard output; it was killed (raise the limit with --reward-max-output)%s",
			e.command, byteSize(e.maxOutput), stderr.suffix())
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
	scores, err := decodeExecOutput(stdout.buf.Bytes(), len(responses))
	if err != nil {
		return nil, fmt.Errorf("reward command %q: %w%s", e.command, err, stderr.suffix())
	}
	return scores, nil
}

// commandEnv is the environment of a reward command: env without the
// variables that may hold tpo's or OpenAI's secrets, then extra.
func commandEnv(env, extra []string) []string {
	out := make([]string, 0, len(env)+len(extra))
	for _, kv := range env {
		if !secretEnv(kv) {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// secretEnv reports whether the KEY=VALUE variable kv may hold tpo's or
// OpenAI's secrets: TPO_* (API keys of tpo serve, of the policy and reward
// servers) and OPENAI_API_KEY.
func secretEnv(kv string) bool {
	name, _, _ := strings.Cut(kv, "=")
	name = strings.ToUpper(name) // names are case-insensitive on Windows
	return strings.HasPrefix(name, "TPO_") || name == "OPENAI_API_KEY"
}

// errOutputLimit fails the write that would pass a capBuffer's limit.
var errOutputLimit = errors.New("output limit exceeded")

// capBuffer keeps what is written to it up to max bytes. The write that
// would pass the limit fails, and calls over once.
type capBuffer struct {
	max      int64
	buf      bytes.Buffer
	exceeded bool
	over     func()
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if c.exceeded || int64(c.buf.Len())+int64(len(p)) > c.max {
		if !c.exceeded {
			c.exceeded = true
			c.over()
		}
		return 0, errOutputLimit
	}
	return c.buf.Write(p)
}

// byteSize renders n bytes for a message: "1 MiB", "64 KiB", "1000 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
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
