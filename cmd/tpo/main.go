// Command tpo runs Test-Time Preference Optimization against real model
// servers: over one prompt or a dataset (tpo run), or as an OpenAI-compatible
// server (tpo serve).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tracing"
)

const usage = `tpo: Test-Time Preference Optimization for any OpenAI-compatible model server

usage: tpo COMMAND [flags] [args]

commands:
  run      optimize one prompt or every item of a dataset (resumable)
  serve    serve the OpenAI chat completions API with optimized answers
  report   write an HTML or Markdown report on runs (curves, gains, cost)
  export   write a run's answers for AlpacaEval, Arena-Hard or as JSONL
  ui       serve the web UI on the runs of a store (trajectories, charts)
  eval     score answers: MATH-500, AlpacaEval 2, Arena-Hard, reward, XSTest
  data     list and download the paper's evaluation sets (--data NAME)
  sim      serve a simulated model server (policy and reward) for trials
  bench    measure throughput, serve latency and token cost on a simulated server
  version  print the version

Run 'tpo COMMAND -h' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// environ is what a command may touch of the outside world, so that tests
// can run commands in process.
type environ struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	level          *slog.LevelVar
	logs           *logSink // the log's writer: stderr, around a progress bar
	stdinTTY       bool
	stderrTTY      bool
	// tracer records spans when the OTEL_* environment asks for traces
	// (nil: not tracing); see package tracing.
	tracer tpo.Tracer
}

func (e *environ) stdinIsTerminal() bool  { return e.stdinTTY }
func (e *environ) stderrIsTerminal() bool { return e.stderrTTY }

// logAt lowers the log level to at least l and returns the logger.
func (e *environ) logAt(l slog.Level) *slog.Logger {
	if e.level.Level() > l {
		e.level.Set(l)
	}
	return e.log
}

func main() {
	ctx, stop := signalContext()
	env := newEnviron(os.Stdin, os.Stdout, os.Stderr)
	env.stdinTTY, env.stderrTTY = isTerminal(os.Stdin), isTerminal(os.Stderr)
	code := runMain(ctx, os.Args[1:], env)
	stop()
	os.Exit(code)
}

// signalError is the cause of a context cancelled by a signal.
type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return e.sig.String() + " signal received" }

// signalContext returns a context cancelled, with a signalError as its
// cause, by the first SIGINT or SIGTERM. A second signal has its default
// effect (the process ends at once): what was saved stays saved. stop
// ends the watch.
func signalContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			cancel(signalError{s})
		case <-done:
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// interruptedError ends a command that a signal stopped: its message is
// printed alone, as it is, and the exit status is 128 + the signal's
// number (130 for SIGINT).
type interruptedError struct{ msg string }

func (e interruptedError) Error() string { return e.msg }

// interruptedStatus is the exit status of a command stopped by ctx's
// signal: 128 + its number, or 130 (SIGINT's) when ctx was cancelled
// otherwise.
func interruptedStatus(ctx context.Context) int {
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		if s, ok := se.sig.(syscall.Signal); ok {
			return 128 + int(s)
		}
	}
	return 128 + int(syscall.SIGINT)
}

// startTracing sets env.tracer from the OTEL_* environment variables and
// returns what flushes the spans at the end.
func (e *environ) startTracing(ctx context.Context) (func(), error) {
	t, shutdown, err := tracing.FromEnv(ctx, os.Getenv, e.stderr)
	if err != nil {
		return nil, err
	}
	if t != nil {
		e.tracer = t
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			e.log.Warn("sending the last traces failed", "err", err)
		}
	}, nil
}

func newEnviron(stdin io.Reader, stdout, stderr io.Writer) *environ {
	level := &slog.LevelVar{}
	level.Set(slog.LevelWarn)
	if l := os.Getenv("TPO_LOG_LEVEL"); l != "" {
		var v slog.Level
		if err := v.UnmarshalText([]byte(l)); err == nil {
			level.Set(v)
		}
	}
	logs := &logSink{w: stderr}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	return &environ{stdin: stdin, stdout: stdout, stderr: stderr, log: log, level: level, logs: logs}
}

// runMain runs a command and returns the exit status: 0 success, 1 failure,
// 2 usage error.
func runMain(ctx context.Context, args []string, env *environ) int {
	if len(args) == 0 {
		fmt.Fprint(env.stderr, usage)
		return 2
	}
	if args[0] == "run" || args[0] == "serve" {
		shutdown, err := env.startTracing(ctx)
		if err != nil {
			fmt.Fprintf(env.stderr, "tpo %s: %v\n", args[0], err)
			return 2
		}
		defer shutdown()
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, env)
	case "serve":
		err = cmdServe(ctx, rest, env)
	case "report":
		err = cmdReport(ctx, rest, env)
	case "export":
		err = cmdExport(ctx, rest, env)
	case "ui":
		err = cmdUI(ctx, rest, env)
	case "eval":
		err = cmdEval(ctx, rest, env)
	case "data":
		err = cmdData(ctx, rest, env)
	case "sim":
		err = cmdSim(ctx, rest, env)
	case "bench":
		err = cmdBench(ctx, rest, env)
	case "version", "--version", "-version":
		fmt.Fprintln(env.stdout, "tpo", version)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(env.stdout, usage)
	default:
		fmt.Fprintf(env.stderr, "tpo: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ie interruptedError
	if errors.As(err, &ie) {
		fmt.Fprintln(env.stderr, ie.msg)
		return interruptedStatus(ctx)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Stopped by a signal before it could say more.
		fmt.Fprintln(env.stderr, "interrupted")
		return interruptedStatus(ctx)
	}
	fmt.Fprintf(env.stderr, "tpo %s: %s\n", args[0], strings.TrimSpace(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// subcommand is a command under another one, such as tpo eval math.
type subcommand struct {
	name string
	run  func(ctx context.Context, args []string, env *environ) error
}

// runSubcommand runs the subcommand args[0] names, or prints usage for
// help; what names the kind of subcommand in errors.
func runSubcommand(ctx context.Context, args []string, env *environ, usage, what string, cmds []subcommand) error {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if len(args) == 0 {
		fmt.Fprint(env.stderr, usage)
		return usagef("give a %s: %s", what, want)
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		fmt.Fprint(env.stdout, usage)
		return nil
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(ctx, args[1:], env)
		}
	}
	return usagef("unknown %s %q (want %s)", what, args[0], want)
}
