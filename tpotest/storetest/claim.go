package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// ClaimStore is a run store whose runs processes claim.
type ClaimStore interface {
	tpo.Store
	tpo.RunClaimer
}

// RunClaims checks the tpo.RunClaimer contract: a run has one claim at a
// time, kept as made (its owner, token and time, to the microsecond); a
// claim is taken over only from the token it names, and released only by
// its own; of processes claiming a run, or taking over one claim, at once,
// exactly one wins. Each test opens a new, empty store.
func RunClaims(t *testing.T, open func(t *testing.T) ClaimStore) {
	t.Run("Claim", func(t *testing.T) { testClaimRun(t, open(t)) })
	t.Run("TakeOver", func(t *testing.T) { testTakeOverRun(t, open(t)) })
	t.Run("Release", func(t *testing.T) { testReleaseRun(t, open(t)) })
	t.Run("Race", func(t *testing.T) { testClaimRunRace(t, open(t), "") })
	t.Run("TakeOverRace", func(t *testing.T) { testClaimRunRace(t, open(t), "tok-dead") })
}

// runClaim makes a claim of a process on host with token.
func runClaim(host string, pid int, token string) tpo.RunClaim {
	return tpo.RunClaim{Owner: tpo.Owner{Host: host, PID: pid, Started: epoch}, Token: token, Since: epoch.Add(time.Duration(pid) * time.Second)}
}

// sameClaim reports whether two claims are the same, times as instants.
func sameClaim(a, b tpo.RunClaim) bool {
	return a.Owner.SameProcess(b.Owner) && a.Token == b.Token && a.Since.Equal(b.Since)
}

// claim calls ClaimRun and fails t unless it says ok and holds want
// afterwards.
func claim(t *testing.T, s ClaimStore, runID string, c tpo.RunClaim, prev string, ok bool, want tpo.RunClaim) {
	t.Helper()
	held, got, err := s.ClaimRun(context.Background(), runID, c, prev)
	if err != nil {
		t.Fatalf("ClaimRun(%s, %s, prev %q): %v", runID, c.Token, prev, err)
	}
	if got != ok || !sameClaim(held, want) {
		t.Errorf("ClaimRun(%s, %s, prev %q) = %+v, %v; want %+v, %v", runID, c.Token, prev, held, got, want, ok)
	}
}

func testClaimRun(t *testing.T, s ClaimStore) {
	ctx := context.Background()
	a, b := mustRun(t, s, "a"), mustRun(t, s, "b")
	first, second := runClaim("build-7", 4242, "tok-1"), runClaim("build-8", 99, "tok-2")
	if _, _, err := s.ClaimRun(ctx, "no-such-run", first, ""); !errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("ClaimRun of an unknown run: %v, want ErrNotFound", err)
	}
	if _, ok, err := s.ClaimRun(ctx, a.ID, tpo.RunClaim{Owner: first.Owner, Since: epoch}, ""); ok || err == nil {
		t.Errorf("ClaimRun without a token = %v, %v; want an error", ok, err)
	}
	// The first claim wins; its owner's start in another zone is the
	// same instant.
	c := first
	c.Owner.Started = c.Owner.Started.In(time.FixedZone("UTC+2", 2*3600))
	claim(t, s, a.ID, c, "", true, first)
	// Another claim finds it, whatever prev it gives but the claim's.
	claim(t, s, a.ID, second, "", false, first)
	claim(t, s, a.ID, second, "tok-other", false, first)
	// Claiming again with one's own token: still one's claim, unchanged.
	again := first
	again.Since = epoch.Add(time.Hour)
	claim(t, s, a.ID, again, "", true, first)
	// Another run is claimed apart.
	claim(t, s, b.ID, second, "", true, second)
	claim(t, s, a.ID, second, "", false, first)
}

func testTakeOverRun(t *testing.T, s ClaimStore) {
	a := mustRun(t, s, "a")
	dead, heir, late := runClaim("build-7", 4242, "tok-dead"), runClaim("build-8", 7, "tok-heir"), runClaim("build-9", 8, "tok-late")
	claim(t, s, a.ID, dead, "", true, dead)
	claim(t, s, a.ID, heir, "tok-dead", true, heir)
	// The claim taken over is gone: taking it over again fails.
	claim(t, s, a.ID, late, "tok-dead", false, heir)
	claim(t, s, a.ID, dead, "", false, heir)
}

func testReleaseRun(t *testing.T, s ClaimStore) {
	ctx := context.Background()
	a := mustRun(t, s, "a")
	mine, theirs := runClaim("build-7", 4242, "tok-mine"), runClaim("build-8", 7, "tok-theirs")
	release := func(runID, token string, want bool) {
		t.Helper()
		if got, err := s.ReleaseRun(ctx, runID, token); got != want || err != nil {
			t.Errorf("ReleaseRun(%s, %s) = %v, %v; want %v", runID, token, got, err, want)
		}
	}
	release(a.ID, "tok-mine", false) // no claim yet
	claim(t, s, a.ID, mine, "", true, mine)
	release(a.ID, "tok-theirs", false)
	release("no-such-run", "tok-mine", false)
	claim(t, s, a.ID, theirs, "", false, mine) // still held
	release(a.ID, "tok-mine", true)
	release(a.ID, "tok-mine", false)
	// Released: a claim wins, also one that meant to take over the
	// claim released.
	claim(t, s, a.ID, theirs, "tok-mine", true, theirs)

	// A claim taken over is not the former owner's to release.
	claim(t, s, a.ID, mine, "tok-theirs", true, mine)
	release(a.ID, "tok-theirs", false)
	claim(t, s, a.ID, theirs, "", false, mine)

	// Deleting a run deletes its claim.
	del, ok := s.(interface {
		DeleteRun(ctx context.Context, runID string) error
	})
	if !ok {
		return
	}
	if err := del.DeleteRun(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClaimRun(ctx, a.ID, theirs, ""); !errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("ClaimRun of a deleted run: %v, want ErrNotFound", err)
	}
	release(a.ID, "tok-mine", false)
}

// testClaimRunRace: processes claiming the same run at once (from no claim
// when prev is "", else taking over the claim with token prev): exactly
// one wins, and every other one is told the winner's claim.
func testClaimRunRace(t *testing.T, s ClaimStore, prev string) {
	const runs, claimers = 5, 8
	for r := range runs {
		run := mustRun(t, s, fmt.Sprintf("race-%d", r))
		if prev != "" {
			claim(t, s, run.ID, runClaim("gone-box", 1, prev), "", true, runClaim("gone-box", 1, prev))
		}
		held := make([]tpo.RunClaim, claimers)
		won := make([]bool, claimers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for c := range claimers {
			wg.Go(func() {
				<-start
				var err error
				held[c], won[c], err = s.ClaimRun(context.Background(), run.ID, runClaim(fmt.Sprintf("box-%d", c), 100+c, fmt.Sprintf("tok-%d", c)), prev)
				if err != nil {
					t.Errorf("%s: ClaimRun by claimer %d: %v", run.ID, c, err)
				}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for c, ok := range won {
			if ok && winner >= 0 {
				t.Errorf("%s: claimers %d and %d both won", run.ID, winner, c)
			}
			if ok {
				winner = c
			}
		}
		if winner < 0 {
			t.Errorf("%s: no claimer won", run.ID)
			continue
		}
		want := runClaim(fmt.Sprintf("box-%d", winner), 100+winner, fmt.Sprintf("tok-%d", winner))
		for c, h := range held {
			if !sameClaim(h, want) {
				t.Errorf("%s: claimer %d was told %+v, want the winner's claim %+v", run.ID, c, h, want)
			}
		}
	}
}
