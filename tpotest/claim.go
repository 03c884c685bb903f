package tpotest

import (
	"context"
	"fmt"

	"github.com/tpoproject/tpo"
)

var _ tpo.RunClaimer = (*MemStore)(nil)

// ClaimRun implements tpo.RunClaimer.
func (m *MemStore) ClaimRun(ctx context.Context, runID string, c tpo.RunClaim, prev string) (tpo.RunClaim, bool, error) {
	if !c.Held() {
		return tpo.RunClaim{}, false, fmt.Errorf("claim run %q: the claim has no token", runID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.runs[runID]; !ok {
		return tpo.RunClaim{}, false, fmt.Errorf("claim run: run %q: %w", runID, tpo.ErrNotFound)
	}
	held := m.claims[runID]
	if held.Held() && held.Token != prev {
		return held, held.Token == c.Token, nil
	}
	if m.claims == nil {
		m.claims = map[string]tpo.RunClaim{}
	}
	m.claims[runID] = c
	return c, true, nil
}

// ReleaseRun implements tpo.RunClaimer.
func (m *MemStore) ReleaseRun(ctx context.Context, runID, token string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.claims[runID]; !ok || c.Token != token {
		return false, nil
	}
	delete(m.claims, runID)
	return true, nil
}
