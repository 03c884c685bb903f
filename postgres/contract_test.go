package postgres

import (
	"context"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/tpotest/storetest"
)

// openTest opens a store in a schema of its own in the test database, and
// checks it when the test ends.
func openTest(t testing.TB) *DB {
	t.Helper()
	db, err := Open(context.Background(), pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(context.Background()); err != nil {
			t.Errorf("Check: %v", err)
		}
		db.Close()
	})
	return db
}

func TestStoreContract(t *testing.T) {
	pgtest.URL(t) // skips here, once, without a database
	storetest.Run(t, func(t *testing.T) tpo.Store { return openTest(t) })
}

func TestReadContract(t *testing.T) {
	pgtest.URL(t)
	storetest.RunRead(t, func(t *testing.T) storetest.ReadStore { return openTest(t) })
}

func TestJobsContract(t *testing.T) {
	pgtest.URL(t)
	storetest.RunJobs(t, func(t *testing.T) tpo.JobStore { return openTest(t) })
}

func TestClaimsContract(t *testing.T) {
	pgtest.URL(t)
	storetest.RunClaims(t, func(t *testing.T) storetest.ClaimStore { return openTest(t) })
}
