package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

func TestInterruptRuns(t *testing.T) {
	db := openTest(t)
	tpotest.TestInterrupter(t, db)

	// What the pages read: the run is interrupted, not finished; its item
	// failed, keeping its score.
	ctx := context.Background()
	sum, err := db.GetRun(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Interrupted == nil || sum.Finished != nil || sum.Failed != 1 || sum.Pending != 0 {
		t.Errorf("run a: interrupted %v, finished %v, failed %d, pending %d", sum.Interrupted, sum.Finished, sum.Failed, sum.Pending)
	}
	items, _, err := db.ListItems(ctx, "a", tpo.ItemFilter{})
	if err != nil || len(items) != 1 || items[0].Status != tpo.StatusFailed || items[0].Score == nil || *items[0].Score != 3 {
		t.Errorf("items of a: %+v, %v; want a failed item keeping its score", items, err)
	}
	runs, err := db.ListRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if (r.Interrupted != nil) != (r.ID == "a" || r.ID == "e") {
			t.Errorf("ListRuns: run %s interrupted %v", r.ID, r.Interrupted)
		}
	}
}

// TestUpgradeFromVersion1: a store written before runs had owners opens,
// and its runs read as they were.
func TestUpgradeFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{migrations[0], "PRAGMA user_version = 1",
		`INSERT INTO runs (id, key, kind, source, config, created, finished, item_count) VALUES ('old', NULL, 'serve', 'api', NULL, 1, NULL, 1)`} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := db.GetRun(context.Background(), "old")
	if err != nil || r.Owner != nil || r.Interrupted != nil || r.Kind != "serve" {
		t.Errorf("old run: %+v, %v", r.Run, err)
	}
	owner := &tpo.Owner{Host: "h", PID: 7, Started: epoch}
	n, _, err := db.OpenRun(context.Background(), tpo.Run{ID: "new", Kind: "serve", Source: "api", Owner: owner})
	if err != nil || n.Owner == nil {
		t.Fatal(err)
	}
	got, _ := db.GetRun(context.Background(), "new")
	if got.Owner == nil || *got.Owner != *owner {
		t.Errorf("owner read back %+v, want %+v", got.Owner, owner)
	}
}
