package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigErrors: every mistake in a --config file gets an error naming
// the file, the right line and what is wrong.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"not an integer", "depth: 2\nwidth: five\n", `c.yaml:2: width: invalid value "five": want an integer`},
		{"out of range", "width: 99999999999999999999\n", `c.yaml:1: width: invalid value "99999999999999999999": want an integer in range`},
		{"not a number", "temperature: hot\n", `c.yaml:1: temperature: invalid value "hot": want a number`},
		{"not a duration", "\n\nreward-timeout: 5\n", `c.yaml:3: reward-timeout: invalid value "5": want a duration such as 90s, 10m or 1h30m`},
		{"not a bool", "v: maybe\n", `c.yaml:1: v: invalid value "maybe": want true or false`},
		{"URL without scheme", "width: 3\npolicy-url: localhost:8000/v1\n",
			`c.yaml:2: policy-url: invalid value "localhost:8000/v1": no scheme; did you mean "http://localhost:8000/v1"?`},
		{"replica URL without scheme", "reward-url:\n  - http://a:8001\n  - b:8001\n",
			`c.yaml:3: reward-url: invalid value "b:8001": no scheme; did you mean "http://b:8001"?`},
		{"set twice", "width: 3\ndepth: 1\nwidth: 4\n", `c.yaml:3: width is set twice (also on line 1)`},
		{"unknown", "width: 3\nwidht: 4\n", `c.yaml:2: unknown setting "widht"`},
		// yaml.v3 reports these on the line before (counting from 0) or at
		// the end of the file.
		{"open flow list", "width: 3\ndepth: [1, 2\nmode: tpo\n", `c.yaml:2: did not find expected ',' or ']'`},
		{"open flow map", "width: 3\nreward-url: {a: 1\nmode: tpo\n", `c.yaml:2: did not find expected ',' or '}'`},
		{"bad list indent", "width: 3\nreward-url:\n  - http://a\n - http://b\n", `c.yaml:4: did not find expected key`},
		{"open quote", "width: 3\npolicy-url: \"http://x\nmode: tpo\n", `c.yaml:2: found unexpected end of stream (a quote or bracket left open?)`},
		{"missing colon", "width: 3\ndepth 2\nmode: tpo\n", `c.yaml:2: could not find expected ':'`},
		{"tab", "width: 3\n\tdepth: 2\n", `c.yaml:2: found a tab character that violates indentation`},
		{"two colons", "width: 3\nreward-url: [http://a,\n  http://b]\nmode: tpo: x\n", `c.yaml:4: mapping values are not allowed in this context`},
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(cfg, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := cli(t, "", "run", "--config", cfg, "--store", filepath.Join(dir, "tpo.db"), "hello")
			if code != 2 || !strings.Contains(stderr, "config "+dir+string(filepath.Separator)+tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr, tt.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("more than one line:\n%s", stderr)
			}
		})
	}
}

// TestFlagErrors: a bad value on the command line says what is wanted.
func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--width", "five", "q"}, `invalid value "five" for flag -width: want an integer`},
		{[]string{"run", "--policy-url", "localhost:8000/v1", "q"}, `-policy-url: no scheme; did you mean "http://localhost:8000/v1"?`},
		{[]string{"run", "--policy-url", "ftp://h/v1", "q"}, `-policy-url: want an absolute http:// or https:// URL`},
		{[]string{"serve", "--reward-url", "127.0.0.1:8001"}, `-reward-url: no scheme; did you mean "http://127.0.0.1:8001"?`},
		{[]string{"run", "--policy-timeout", "10", "q"}, `-policy-timeout: want a duration such as 90s, 10m or 1h30m`},
		{[]string{"eval", "judge", "--judge-url", "gpu:8000/v1"}, `-judge-url: no scheme; did you mean "http://gpu:8000/v1"?`},
		{[]string{"eval", "xstest", "--classifier-url", "gpu/v1"}, `-classifier-url: no scheme; did you mean "http://gpu/v1"?`},
	}
	for _, tt := range tests {
		code, _, stderr := cli(t, "", tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
}
