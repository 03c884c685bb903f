package main

import (
	"slices"
	"strings"
	"testing"
)

func TestExecEnvFlag(t *testing.T) {
	t.Setenv("TPO_REWARD_SECRET", "s3")
	t.Setenv("EMPTY_BUT_SET", "")
	tests := []struct {
		vals []string
		want []string
		err  string
	}{
		{nil, nil, ""},
		{[]string{"TPO_REWARD_SECRET"}, []string{"TPO_REWARD_SECRET=s3"}, ""},
		{[]string{"EMPTY_BUT_SET", "A=b=c", "B="}, []string{"EMPTY_BUT_SET=", "A=b=c", "B="}, ""},
		{[]string{"NOT_SET_ANYWHERE_XYZ"}, nil, "NOT_SET_ANYWHERE_XYZ is not set in tpo's environment"},
		{[]string{"=x"}, nil, "want a variable NAME or NAME=VALUE"},
		{[]string{"A B"}, nil, "want a variable NAME or NAME=VALUE"},
	}
	for _, tt := range tests {
		got, err := execEnv(tt.vals)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "--reward-env") {
				t.Errorf("execEnv(%q) error %v, want %q", tt.vals, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("execEnv(%q) = %q, %v; want %q", tt.vals, got, err, tt.want)
		}
	}
}

// TestRewardExecFlags: a tpo run whose reward command prints too much
// fails naming the limit; the command gets a variable only with
// --reward-env.
func TestRewardExecFlags(t *testing.T) {
	t.Setenv("TPO_POLICY_API_KEY", "policy-secret")
	store := t.TempDir() + "/r.db"
	code, out, stderr := cli(t, "", "run", "--sim", "--store", store, "--out", "-", "--width", "2", "--depth", "0",
		"--reward", "exec", "--reward-max-output", "100", "--reward-cmd", `cat >/dev/null; yes 1,`, "Say hi")
	if code == 0 || !strings.Contains(out+stderr, "more than the limit of 100 bytes") {
		t.Errorf("endless output: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "got []"},
		{[]string{"--reward-env", "TPO_POLICY_API_KEY"}, "got [policy-secret]"},
	} {
		args := append([]string{"run", "--sim", "--store", store, "--out", "-", "--width", "2", "--depth", "0", "--reward", "exec",
			"--reward-cmd", `cat >/dev/null; echo "got [$TPO_POLICY_API_KEY]" >&2; exit 1`}, tt.args...)
		_, out, stderr := cli(t, "", append(args, "Say hi")...)
		if !strings.Contains(out+stderr, tt.want) {
			t.Errorf("%q: the command did not say %q\nstdout %s\nstderr %s", tt.args, tt.want, out, stderr)
		}
	}
}
