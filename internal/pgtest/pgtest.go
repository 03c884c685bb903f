// Package pgtest gives tests a PostgreSQL database of their own: a new
// schema in the database that $TPO_TEST_POSTGRES names, dropped when the
// test ends. Without the variable the test is skipped, except under
// CI=true, where it fails: CI must not skip the PostgreSQL tests silently.
//
// .ci/postgres.sh starts a throw-away cluster and prints the variable:
//
//	eval "$(bash .ci/postgres.sh start /tmp/tpo-pg)"
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the variable holding the URL of the test database.
const Env = "TPO_TEST_POSTGRES"

// URL returns the URL of the test database. It skips the test when the
// variable is unset, or fails it under CI=true.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u != "" {
		return u
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("$%s is not set, and CI=true: .ci/run starts a PostgreSQL cluster and sets it", Env)
	}
	t.Skipf("$%s is not set; start a throw-away cluster with: eval \"$(bash .ci/postgres.sh start /tmp/tpo-pg)\"", Env)
	return ""
}

// Schema creates a schema of its own for the test and returns the test
// database's URL with search_path set to it; the schema is dropped, with
// everything in it, when the test ends.
func Schema(t testing.TB) string {
	t.Helper()
	base := URL(t)
	var b [6]byte
	rand.Read(b[:])
	name := "tpo_test_" + hex.EncodeToString(b[:])
	exec(t, base, "CREATE SCHEMA "+name)
	t.Cleanup(func() { exec(t, base, "DROP SCHEMA "+name+" CASCADE") })
	return WithParam(t, base, "search_path", name)
}

// WithParam returns u with the query parameter key set to value.
func WithParam(t testing.TB, u, key, value string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatalf("$%s: %v", Env, err)
	}
	q := p.Query()
	q.Set(key, value)
	p.RawQuery = q.Encode()
	return p.String()
}

// exec runs one statement on a connection of its own.
func exec(t testing.TB, u, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(fmt.Errorf("test database: %s: %w", sql, err))
	}
}
