// Package vllmver holds what tpo knows of how vLLM's pooling API changed
// between versions, for the reward scorer and the fake and simulated vLLM
// servers that test it.
package vllmver

import "github.com/tpoproject/tpo/internal/pep440"

const (
	// UseActivation is the first version that reads "use_activation";
	// older ones ignore it (unknown fields are dropped) and apply the
	// activation. From it on, the legacy "activation" field turns the
	// activation on whenever it is present.
	UseActivation = "0.11.1"
	// Activation is the first version that reads the legacy "activation"
	// field; before it the field was "softmax".
	Activation = "0.10.1"
	// Current is the version the fakes and the simulator emulate by
	// default.
	Current = "0.12.0"
)

// AtLeast reports whether v is version min or later, by PEP 440's order:
// pre-releases and development builds of min come before it.
func AtLeast(v pep440.Version, min string) bool {
	return v.Compare(pep440.MustParse(min)) >= 0
}

// Activated reports whether a vLLM server of version v applies the
// activation (a sigmoid for single-label models) to a pooling request with
// these fields (nil: absent). The activation is on unless the field the
// version reads turns it off.
func Activated(v pep440.Version, useActivation, activation, softmax *bool) bool {
	var field *bool
	switch {
	case AtLeast(v, UseActivation):
		if activation != nil {
			return true
		}
		field = useActivation
	case AtLeast(v, Activation):
		field = activation
	default:
		field = softmax
	}
	return field == nil || *field
}
