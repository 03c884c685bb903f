package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tpoproject/tpo/guard"
	"github.com/tpoproject/tpo/httpx"
)

// usageError marks errors that exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// listFlag is a repeatable string flag. Values from a config file are
// replaced, not extended, by the first value given on the command line.
type listFlag struct {
	vals       []string
	fromConfig bool
	// clean, when set, checks each value as it is set and returns the
	// value to keep.
	clean func(string) (string, error)
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Set(v string) error {
	if l.clean != nil {
		var err error
		if v, err = l.clean(v); err != nil {
			return err
		}
	}
	if l.fromConfig {
		l.vals, l.fromConfig = nil, false
	}
	l.vals = append(l.vals, v)
	return nil
}

// optInt is an int flag that remembers whether it was set.
type optInt struct {
	v   int64
	set bool
}

func (o *optInt) String() string {
	if !o.set {
		return ""
	}
	return strconv.FormatInt(o.v, 10)
}
func (o *optInt) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("want an integer")
	}
	o.v, o.set = v, true
	return nil
}

// optFloat is a float flag that remembers whether it was set.
type optFloat struct {
	v   float64
	set bool
}

func (o *optFloat) String() string {
	if !o.set {
		return ""
	}
	return strconv.FormatFloat(o.v, 'g', -1, 64)
}
func (o *optFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return errors.New("want a number")
	}
	o.v, o.set = v, true
	return nil
}

// parseArgs parses args with fs, allowing flags after positional
// arguments, and applies the YAML config file named by --config (if fs has
// that flag) before the command line, so that flags override it.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	// Print the full usage for -h only; a bad flag gets a one-line hint
	// (the error, printed by the caller).
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	restore := checkValues(fs)
	defer restore()
	if f := fs.Lookup("config"); f != nil {
		if path := findConfigArg(args); path != "" {
			if err := applyConfig(fs, path); err != nil {
				return nil, usageError{err}
			}
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				restore()
				fs.SetOutput(out)
				usage()
				return nil, err
			}
			return nil, usageError{fmt.Errorf("%w (see 'tpo %s -h')", err, fs.Name())}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// findConfigArg returns the value of --config in args without parsing them.
func findConfigArg(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"--config=", "-config="} {
			if strings.HasPrefix(a, p) {
				return a[len(p):]
			}
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// applyConfig sets fs's flags from a YAML file whose keys are flag names
// (e.g. policy-url: or policy_url:). Lists set repeatable flags.
func applyConfig(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return yamlError(path, data, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s:%d: want a mapping of setting names to values", path, root.Line)
	}
	seen := map[string]int{} // setting: its line
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := strings.ReplaceAll(k.Value, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == "config" {
			return fmt.Errorf("config %s:%d: unknown setting %q (settings: %s)", path, k.Line, k.Value, flagNames(fs))
		}
		if line, ok := seen[name]; ok {
			return fmt.Errorf("config %s:%d: %s is set twice (also on line %d)", path, k.Line, k.Value, line)
		}
		seen[name] = k.Line
		var vals []*yaml.Node
		switch v.Kind {
		case yaml.ScalarNode:
			vals = []*yaml.Node{v}
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("config %s:%d: %s: want a list of plain values", path, e.Line, k.Value)
				}
				vals = append(vals, e)
			}
		default:
			return fmt.Errorf("config %s:%d: %s: want a value or a list", path, v.Line, k.Value)
		}
		for _, e := range vals {
			if err := f.Value.Set(e.Value); err != nil {
				return fmt.Errorf("config %s:%d: %s: invalid value %q: %v", path, e.Line, k.Value, e.Value, err)
			}
		}
		if l, ok := unwrapValue(f.Value).(*listFlag); ok {
			l.fromConfig = true
		}
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError names the file and line of a YAML syntax error. yaml.v3
// counts some lines from 0, and puts others at the end of the file (an
// unclosed quote): the line is the first that makes the lines up to it
// fail with the same error.
func yamlError(path string, data []byte, err error) error {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	line, _ := strconv.Atoi(m[1])
	lines := strings.SplitAfter(string(data), "\n")
	for k := 1; k <= len(lines) && k <= maxConfigLines; k++ {
		var doc yaml.Node
		perr := yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &doc)
		if pm := yamlLineRE.FindStringSubmatch(fmt.Sprint(perr)); pm != nil && pm[2] == m[2] {
			line = k
			break
		}
	}
	msg := m[2]
	if strings.Contains(msg, "end of stream") {
		msg += " (a quote or bracket left open?)"
	}
	return fmt.Errorf("config %s:%d: %s", path, max(line, 1), msg)
}

// maxConfigLines bounds the search for a syntax error's line.
const maxConfigLines = 2000

// checkedValue wraps a flag's value so that a bad value gets an error
// saying what is wanted ("want an integer") instead of "parse error", and
// a server URL (a flag named *-url) is checked as it is set.
type checkedValue struct {
	flag.Value
	name string
}

// checkValues wraps every flag of fs in a checkedValue, until restore.
func checkValues(fs *flag.FlagSet) (restore func()) {
	orig := map[*flag.Flag]flag.Value{}
	fs.VisitAll(func(f *flag.Flag) {
		orig[f] = f.Value
		f.Value = &checkedValue{Value: f.Value, name: f.Name}
	})
	return func() {
		for f, v := range orig {
			f.Value = v
		}
	}
}

func unwrapValue(v flag.Value) flag.Value {
	if c, ok := v.(*checkedValue); ok {
		return c.Value
	}
	return v
}

func (c *checkedValue) Set(s string) error {
	if strings.HasSuffix(c.name, "-url") && s != "" {
		var ue *httpx.URLError
		if err := httpx.CheckURL(s); errors.As(err, &ue) {
			return errors.New(ue.Problem)
		} else if err != nil {
			return err
		}
	}
	err := c.Value.Set(s)
	if err == nil {
		return nil
	}
	g, ok := c.Value.(flag.Getter)
	if !ok {
		return err
	}
	var want string
	switch g.Get().(type) {
	case int, int64, uint, uint64:
		want = "want an integer"
	case float64:
		want = "want a number"
	case bool:
		want = "want true or false"
	case time.Duration:
		want = "want a duration such as 90s, 10m or 1h30m"
	default:
		return err
	}
	if err.Error() == "value out of range" {
		want += " in range"
	}
	return errors.New(want)
}

// IsBoolFlag tells the flag package whether the flag takes no value.
func (c *checkedValue) IsBoolFlag() bool {
	b, ok := c.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Get returns the wrapped value's value.
func (c *checkedValue) Get() any {
	if g, ok := c.Value.(flag.Getter); ok {
		return g.Get()
	}
	return nil
}

func flagNames(fs *flag.FlagSet) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// envOr returns the first non-empty environment variable of names, or def.
func envOr(def string, names ...string) string {
	if def != "" {
		return def
	}
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// listenFlags are the flags of a command that serves HTTP: where to listen,
// which API keys to require, which host names to answer to, and how long
// clients may take.
type listenFlags struct {
	addr         string
	keys         listFlag
	insecure     bool
	hosts        listFlag
	readTimeout  time.Duration
	writeTimeout time.Duration
	idleTimeout  time.Duration
}

func (l *listenFlags) register(fs *flag.FlagSet, defaultAddr, keyUsage string) {
	fs.StringVar(&l.addr, "addr", defaultAddr, "`address` to listen on (host:port)")
	l.keys.clean = cleanKey
	fs.Var(&l.keys, "api-key", keyUsage)
	fs.BoolVar(&l.insecure, "insecure-no-auth", false, "allow listening on a non-loopback address without API keys")
	fs.Var(&l.hosts, "allowed-host", "`host` name the server answers to (a name, an IP address, *.example.com, or * for any); repeat for several; others get 421 (default: localhost, 127.0.0.1, ::1 and the --addr host; on a wildcard address also the machine's name and addresses)")
	fs.DurationVar(&l.readTimeout, "read-timeout", guard.DefaultReadTimeout, "time a client has to send a request's headers, and then its body (0: no limit)")
	fs.DurationVar(&l.writeTimeout, "write-timeout", guard.DefaultWriteTimeout, "time one write of a response may wait for a client that does not read; the client is then dropped (0: no limit)")
	fs.DurationVar(&l.idleTimeout, "idle-timeout", guard.DefaultIdleTimeout, "time an idle keep-alive connection is kept open (0: no limit)")
}

// allowedHosts returns the hosts of --allowed-host, or the defaults for
// --addr.
func (l *listenFlags) allowedHosts() (*guard.Hosts, error) {
	patterns := l.hosts.vals
	if len(patterns) == 0 {
		patterns = guard.DefaultHosts(l.addr)
	}
	h, err := guard.ParseHosts(patterns)
	if err != nil {
		return nil, usagef("--allowed-host: %v", err)
	}
	return h, nil
}

// checkTimeouts refuses negative timeouts.
func (l *listenFlags) checkTimeouts() error {
	if l.readTimeout < 0 || l.writeTimeout < 0 || l.idleTimeout < 0 {
		return usagef("--read-timeout, --write-timeout and --idle-timeout must not be negative (0: no limit)")
	}
	return nil
}

// httpServer returns the http.Server for h with the connection timeouts.
// The body's read deadline and the per-write deadlines are set by the
// handlers (package guard), since a whole response may take a long time.
func (l *listenFlags) httpServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.readTimeout,
		IdleTimeout:       l.idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// orNone turns a timeout flag's 0 (no limit) into the negative value that
// package server and ui take for none.
func orNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// apiKeys returns the keys of --api-key and $TPO_API_KEYS (comma-separated),
// refusing a non-loopback address without any unless --insecure-no-auth.
// Keys are trimmed; a blank one (of --api-key, refused as it is set, or of
// $TPO_API_KEYS) is refused, lest a server meant to need a key need none.
func (l *listenFlags) apiKeys() ([]string, error) {
	keys := append([]string(nil), l.keys.vals...)
	envKeys, err := splitKeys(os.Getenv("TPO_API_KEYS"))
	if err != nil {
		return nil, usagef("$TPO_API_KEYS: %w", err)
	}
	keys = append(keys, envKeys...)
	if len(keys) == 0 && !isLoopback(l.addr) && !l.insecure {
		return nil, usagef("refusing to listen on %s without API keys: give --api-key (or $TPO_API_KEYS), listen on a loopback address, or pass --insecure-no-auth", l.addr)
	}
	return keys, nil
}

// cleanKey trims an API key, refusing one that is blank.
func cleanKey(k string) (string, error) {
	if k = strings.TrimSpace(k); k == "" {
		return "", errors.New("blank API key (spaces around a key are trimmed)")
	}
	return k, nil
}

// splitKeys returns the trimmed keys of a comma-separated list, refusing a
// blank entry ("a,,b", "a, " or " "); an empty list has no keys.
func splitKeys(list string) ([]string, error) {
	if list == "" {
		return nil, nil
	}
	parts := strings.Split(list, ",")
	keys := make([]string, len(parts))
	for i, p := range parts {
		if keys[i] = strings.TrimSpace(p); keys[i] == "" {
			return nil, fmt.Errorf("key %d of %d is blank (keys are separated by commas; spaces around a key are trimmed)", i+1, len(parts))
		}
	}
	return keys, nil
}
