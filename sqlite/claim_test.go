package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// TestClaimRunAcrossHandles: handles of one file, as separate processes
// have (each its own connections and write mutex), claim a run at once:
// SQLite's write lock alone lets exactly one win.
func TestClaimRunAcrossHandles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	const handles = 6
	dbs := make([]*DB, handles)
	for i := range dbs {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	for round := range 5 {
		run, _, err := dbs[0].OpenRun(ctx, tpo.Run{Key: fmt.Sprint("run-", round), Kind: "run", Source: "d.jsonl"})
		if err != nil {
			t.Fatal(err)
		}
		won := make([]bool, handles)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, db := range dbs {
			wg.Go(func() {
				<-start
				c := tpo.RunClaim{Owner: tpo.Owner{Host: "box", PID: 100 + i, Started: time.Now()}, Token: fmt.Sprint("tok-", i), Since: time.Now()}
				var err error
				if _, won[i], err = db.ClaimRun(ctx, run.ID, c, ""); err != nil {
					t.Errorf("handle %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		n := 0
		for _, ok := range won {
			if ok {
				n++
			}
		}
		if n != 1 {
			t.Errorf("round %d: %d handles won the claim, want 1: %v", round, n, won)
		}
	}
}
