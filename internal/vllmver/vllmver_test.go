package vllmver

import (
	"testing"

	"github.com/tpoproject/tpo/internal/pep440"
)

func TestActivated(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		version                        string
		useActivation, activation, sfx *bool
		want                           bool
	}{
		{"0.12.0", nil, nil, nil, true},
		{"0.12.0", &no, nil, nil, false},
		{"0.12.0", &yes, nil, nil, true},
		{"0.12.0", &no, &no, nil, true}, // a present activation field turns it on
		{"0.11.1", &no, nil, &no, false},
		{"0.11.1rc2", &no, nil, nil, true}, // before 0.11.1: use_activation ignored
		{"0.11.1.dev123+gabcdef", &no, nil, nil, true},
		{"0.11.0", &no, nil, nil, true},
		{"0.11.0", nil, &no, nil, false},
		{"0.10.1", nil, &no, nil, false},
		{"0.10.1", nil, nil, &no, true},
		{"0.10.0", nil, &no, nil, true},
		{"0.9.2", nil, nil, &no, false},
		{"0.6.3.post1", &no, &no, nil, true},
	}
	for _, tt := range tests {
		v := pep440.MustParse(tt.version)
		if got := Activated(v, tt.useActivation, tt.activation, tt.sfx); got != tt.want {
			t.Errorf("Activated(%s, %v, %v, %v) = %v, want %v", tt.version, show(tt.useActivation), show(tt.activation), show(tt.sfx), got, tt.want)
		}
	}
}

func show(b *bool) string {
	if b == nil {
		return "absent"
	}
	if *b {
		return "true"
	}
	return "false"
}

func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"0.11.1": true, "0.11.1+cu128": true, "0.11.1.post1": true, "0.12.0": true,
		"0.11.1rc2": false, "0.11.1.dev123+gabcdef": false, "0.11.0": false, "0.10.1.1": false} {
		if got := AtLeast(pep440.MustParse(v), UseActivation); got != want {
			t.Errorf("AtLeast(%s, %s) = %v, want %v", v, UseActivation, got, want)
		}
	}
}
