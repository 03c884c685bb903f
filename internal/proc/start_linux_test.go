package proc

import (
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tail := " 1 1 1 0 -1 4194560 100 0 0 0 10 5 0 0 20 0 1 0 123456 1000 100"
	tests := []struct {
		stat  string
		state string
		ticks uint64
		ok    bool
	}{
		{"42 (tpo) S" + tail, "S", 123456, true},
		{"42 (a b) c) ) Z" + tail, "Z", 123456, true}, // a name with spaces and parentheses
		{"42 (tpo) S 1 1", "", 0, false},
		{"42 tpo S" + tail, "", 0, false},
		{"42 (tpo) S" + strings.Replace(tail, "123456", "x", 1), "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		state, ticks, err := parseStat([]byte(tt.stat))
		if (err == nil) != tt.ok || state != tt.state || ticks != tt.ticks {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, ok %v", tt.stat, state, ticks, err, tt.state, tt.ticks, tt.ok)
		}
	}
}

func TestParseBootTime(t *testing.T) {
	got, err := parseBootTime([]byte("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"))
	if err != nil || !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("parseBootTime = %v, %v", got, err)
	}
	for _, bad := range []string{"cpu 1\n", "btime x\n", "btime -5\n", ""} {
		if _, err := parseBootTime([]byte(bad)); err == nil {
			t.Errorf("parseBootTime(%q) accepted it", bad)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (tpo) S 1 1 1 0 -1 4194560 100 0 0 0 10 5 0 0 20 0 1 0 123456 1000 100"))
	f.Add([]byte("1 ((()) R"))
	f.Fuzz(func(t *testing.T, stat []byte) {
		state, _, err := parseStat(stat)
		if err == nil && (state == "" || strings.ContainsAny(state, " \t\n")) {
			t.Errorf("parseStat(%q): state %q", stat, state)
		}
	})
}

func FuzzParseBootTime(f *testing.F) {
	f.Add([]byte("btime 1700000000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := parseBootTime(data); err == nil && b.Unix() <= 0 {
			t.Errorf("parseBootTime(%q) = %v", data, b)
		}
	})
}
