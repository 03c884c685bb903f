package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest/storetest"
)

// openContract opens a store in a temporary directory, with the real
// clock, and checks its integrity when the test ends.
func openContract(t testing.TB) *DB {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
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

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tpo.Store { return openContract(t) })
}

func TestReadContract(t *testing.T) {
	storetest.RunRead(t, func(t *testing.T) storetest.ReadStore { return openContract(t) })
}

func TestJobsContract(t *testing.T) {
	storetest.RunJobs(t, func(t *testing.T) tpo.JobStore { return openContract(t) })
}

func TestClaimsContract(t *testing.T) {
	storetest.RunClaims(t, func(t *testing.T) storetest.ClaimStore { return openContract(t) })
}
