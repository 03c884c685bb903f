package tpo

import (
	"context"
	"sync"
)

// A Meter adds up the usage of the calls made with a context that carries
// it (see WithMeter). The optimizer gives each reward model call a meter,
// so that what scoring cost (HTTP requests, retries, a judge's tokens) is
// recorded per step without the Scorer interface having to return it.
// Backends report to MeterFrom(ctx) when it is not nil. A Meter is safe for
// concurrent use.
type Meter struct {
	mu    sync.Mutex
	u     Usage
	notes []string
}

// Add adds u to the meter.
func (m *Meter) Add(u Usage) {
	m.mu.Lock()
	m.u.Add(u)
	m.mu.Unlock()
}

// Note records something out of the ordinary that a call did on purpose
// and that the step's notes should show (an input truncated to fit the
// reward model, a fallback to another endpoint).
func (m *Meter) Note(s string) {
	m.mu.Lock()
	m.notes = append(m.notes, s)
	m.mu.Unlock()
}

// Notes returns the notes recorded so far, in order.
func (m *Meter) Notes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.notes...)
}

// Usage returns the total so far.
func (m *Meter) Usage() Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.u
}

type meterKey struct{}

// WithMeter returns a context carrying m.
func WithMeter(ctx context.Context, m *Meter) context.Context {
	return context.WithValue(ctx, meterKey{}, m)
}

// MeterFrom returns the meter ctx carries, or nil.
func MeterFrom(ctx context.Context) *Meter {
	m, _ := ctx.Value(meterKey{}).(*Meter)
	return m
}
