package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest/storetest"
)

// clock is a fake clock that moves one second each time it is read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

var epoch = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)

// openTest opens a store in a temporary directory with a fake clock, and
// checks its integrity when the test ends.
func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: epoch}
	db.now = c.now
	t.Cleanup(func() {
		if err := db.Check(context.Background()); err != nil {
			t.Errorf("Check: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func mustRun(t *testing.T, db *DB, key string) tpo.Run {
	t.Helper()
	r, _, err := db.OpenRun(context.Background(), tpo.Run{Key: key, Kind: "run", Source: "test.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// asJSON makes values comparable regardless of nil versus empty slices.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTwoHandles writes through two DBs on one file, as two processes would.
func TestTwoHandles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	run, _, err := dbs[0].OpenRun(ctx, tpo.Run{Kind: "run", Source: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 16*10)
	for w := range 16 {
		db := dbs[w%2]
		wg.Go(func() {
			id := fmt.Sprint(w)
			if _, err := db.StartItem(ctx, run.ID, w, storetest.Item(id)); err != nil {
				errc <- err
				return
			}
			for n := range 5 {
				if err := db.SaveStep(ctx, run.ID, id, storetest.Step(n, 1)); err != nil {
					errc <- err
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	_, total, err := dbs[1].ListItems(ctx, run.ID, tpo.ItemFilter{})
	if err != nil || total != 16 {
		t.Errorf("ListItems: total %d, %v; want 16", total, err)
	}
}

// fillRun makes a run of ten items: a0..a6 done with scores 0..6 and initial
// best 0, a7 failed, a8 and a9 pending (a8 with one step).
func fillRun(t *testing.T, db *DB) tpo.Run {
	t.Helper()
	ctx := context.Background()
	run := mustRun(t, db, "fill")
	for i := range 10 {
		id := fmt.Sprintf("a%d", i)
		it := storetest.Item(id)
		if i == 3 {
			it.Messages[1].Content = "What is 100% of_this?"
		}
		if _, err := db.StartItem(ctx, run.ID, i, it); err != nil {
			t.Fatal(err)
		}
		switch {
		case i < 7:
			steps := []tpo.Step{storetest.Step(0, 0), storetest.Step(1, float64(i))}
			steps[1].Usage.CompletionTokens = 1000 * i
			if err := db.FinishItem(ctx, run.ID, storetest.Result(id, steps, "")); err != nil {
				t.Fatal(err)
			}
		case i == 7:
			if err := db.FinishItem(ctx, run.ID, storetest.Result(id, nil, "server said no")); err != nil {
				t.Fatal(err)
			}
		case i == 8:
			if err := db.SaveStep(ctx, run.ID, id, storetest.Step(0, 2.5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return run
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	run, _, err := db.OpenRun(ctx, tpo.Run{Key: "k", Kind: "run", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, run.ID, 0, storetest.Item("a")); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveStep(ctx, run.ID, "a", storetest.Step(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	got, created, err := db.OpenRun(ctx, tpo.Run{Key: "k", Kind: "run"})
	if err != nil || created || got.ID != run.ID {
		t.Fatalf("OpenRun after reopening: got %q created %v, %v; want %q", got.ID, created, err, run.ID)
	}
	st, err := db.StartItem(ctx, run.ID, 0, storetest.Item("a"))
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(t, st.Steps) != asJSON(t, []tpo.Step{storetest.Step(0, 1, 2)}) {
		t.Errorf("steps after reopening: got %s", asJSON(t, st.Steps))
	}
	var mode string
	if err := db.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode: got %q, %v; want wal", mode, err)
	}
	var fk int
	if err := db.db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys: got %d, %v; want 1", fk, err)
	}

	// A schema newer than the program is refused.
	if _, err := db.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(ctx); err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Errorf("Check with a newer schema: got %v", err)
	}
	db.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: got %v, want an error", err)
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", ":memory:", "a?b", "file:x.db", filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")} {
		if db, err := Open(context.Background(), p); err == nil {
			db.Close()
			t.Errorf("Open(%q): got no error", p)
		}
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := fillRun(t, db)
	if err := db.Check(ctx); err != nil {
		t.Fatalf("Check of a sound store: %v", err)
	}
	// Break a foreign key behind the store's back.
	raw, err := sql.Open("sqlite", db.Path()+"?_pragma=foreign_keys(0)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO steps (run_id, item_id, step, data, requests, prompt_tokens, completion_tokens, saved_at)
		VALUES (?, 'ghost', 0, '{}', 0, 0, 0, 0)`, run.ID); err != nil {
		t.Fatal(err)
	}
	err = db.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "steps row") {
		t.Errorf("Check with an orphan step: got %v, want an error naming steps", err)
	}
	if _, err := raw.Exec(`DELETE FROM steps WHERE item_id = 'ghost'`); err != nil {
		t.Fatal(err)
	}
}
