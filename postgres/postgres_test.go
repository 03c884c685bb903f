package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
)

// TestMigrateAtOnce starts several stores on a new schema at once, as
// processes starting together would: each migration is applied once.
func TestMigrateAtOnce(t *testing.T) {
	ctx := context.Background()
	u := pgtest.Schema(t)
	const n = 8
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(ctx, u) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer dbs[i].Close()
	}
	applied := func() map[int]time.Time {
		rows, err := dbs[0].pool.Query(ctx, `SELECT version, applied FROM schema_migrations`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[int]time.Time{}
		for rows.Next() {
			var (
				v  int
				at time.Time
			)
			if err := rows.Scan(&v, &at); err != nil {
				t.Fatal(err)
			}
			m[v] = at
		}
		return m
	}
	before := applied()
	if len(before) != len(migrations) {
		t.Errorf("schema_migrations holds %d versions, want %d", len(before), len(migrations))
	}
	for _, m := range migrations {
		if _, ok := before[m.version]; !ok {
			t.Errorf("version %d not recorded", m.version)
		}
	}
	// Opening again applies nothing.
	db, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if after := applied(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("opening again changed schema_migrations: %v, was %v", after, before)
	}
	if err := dbs[n-1].Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestNewerSchema: a database written by a newer program is refused, with
// the version.
func TestNewerSchema(t *testing.T) {
	ctx := context.Background()
	u := pgtest.Schema(t)
	db, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	newer := SchemaVersion() + 1
	if _, err := db.pool.Exec(ctx, `INSERT INTO schema_migrations (version, description) VALUES ($1, 'from the future')`, newer); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("schema is at version %d, newer than this program's (%d)", newer, SchemaVersion())
	if _, err := Open(ctx, u); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open of a newer schema: got %v, want an error containing %q", err, want)
	}
	if err := db.Check(ctx); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", newer)) {
		t.Errorf("Check of a newer schema: got %v", err)
	}
	if _, err := db.pool.Exec(ctx, `DELETE FROM schema_migrations WHERE version = $1`, newer); err != nil {
		t.Fatal(err)
	}
}

// TestTwoProcesses writes one run through two stores, with pools of their
// own, as two processes on two machines would.
func TestTwoProcesses(t *testing.T) {
	ctx := context.Background()
	u := pgtest.Schema(t)
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	const n = 16
	runs := make([]tpo.Run, n)
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			runs[i], created[i], errs[i] = dbs[i%2].OpenRun(ctx, tpo.Run{Key: "shared", Kind: "run", Source: "data.jsonl"})
		})
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if runs[i].ID != runs[0].ID {
			t.Errorf("process %d got run %q, another %q", i%2, runs[i].ID, runs[0].ID)
		}
		if created[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Errorf("%d callers created the run, want 1", creators)
	}
	runID := runs[0].ID

	// Both start every item (a worker that resumes while another runs);
	// each saves the steps of half the items.
	for w := range n {
		wg.Go(func() {
			it := tpo.Item{ID: fmt.Sprint(w), Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "q"}}}
			for _, db := range dbs {
				if _, err := db.StartItem(ctx, runID, w, it); err != nil {
					t.Error(err)
					return
				}
			}
			for s := range 4 {
				step := tpo.Step{Step: s, Candidates: []tpo.Candidate{{Text: "a", Score: float64(s)}}}
				if err := dbs[w%2].SaveStep(ctx, runID, it.ID, step); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	s, err := dbs[1].GetRun(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Items != n || s.Pending != n {
		t.Errorf("run: %d items, %d pending; want %d and %d", s.Items, s.Pending, n, n)
	}
	items, _, err := dbs[0].ListItems(ctx, runID, tpo.ItemFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Steps != 4 || it.Score == nil || *it.Score != 3 {
			t.Errorf("item %s: %d steps, score %v", it.ID, it.Steps, it.Score)
		}
	}
}

// TestJSONColumns: the configuration is jsonb, which SQL can query; steps
// are json, kept byte for byte.
func TestJSONColumns(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run, _, err := db.OpenRun(ctx, tpo.Run{Key: "k", Kind: "run", Config: json.RawMessage(`{"settings": {"config": {"mode": "tpo"}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	var mode, typ string
	if err := db.pool.QueryRow(ctx, `SELECT config #>> '{settings,config,mode}', pg_typeof(config)::text FROM runs WHERE id = $1`, run.ID).Scan(&mode, &typ); err != nil {
		t.Fatal(err)
	}
	if mode != "tpo" || typ != "jsonb" {
		t.Errorf("config: mode %q, type %s", mode, typ)
	}
	if _, err := db.StartItem(ctx, run.ID, 0, tpo.Item{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	step := tpo.Step{Step: 0, Candidates: []tpo.Candidate{{Text: "x\x00y \u2028", Score: 1}}, Notes: []string{"z"}}
	if err := db.SaveStep(ctx, run.ID, "a", step); err != nil {
		t.Fatal(err)
	}
	var data string
	if err := db.pool.QueryRow(ctx, `SELECT data::text FROM steps WHERE run_id = $1`, run.ID).Scan(&data); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(step)
	if data != string(want) {
		t.Errorf("step data:\ngot  %s\nwant %s", data, want)
	}
}

// TestRefusedKeys: ids and keys that text cannot hold are refused with a
// message that says so.
func TestRefusedKeys(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if _, _, err := db.OpenRun(ctx, tpo.Run{Key: "a\x00b", Kind: "run"}); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("OpenRun with a NUL in the key: got %v", err)
	}
	run, _, err := db.OpenRun(ctx, tpo.Run{Kind: "run", Source: "bad \xff path"})
	if err != nil {
		t.Fatal(err)
	}
	if run.Source != "bad \uFFFD path" {
		t.Errorf("source with invalid UTF-8: got %q", run.Source)
	}
	if _, err := db.StartItem(ctx, run.ID, 0, tpo.Item{ID: "bad \xff id"}); err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
		t.Errorf("StartItem with invalid UTF-8 in the id: got %v", err)
	}
}

// TestCheck finds what the store's writes never leave.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run, _, err := db.OpenRun(ctx, tpo.Run{Kind: "run"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, run.ID, 0, tpo.Item{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveStep(ctx, run.ID, "a", tpo.Step{Step: 0}); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(ctx); err != nil {
		t.Fatalf("Check of a sound store: %v", err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE items SET steps = 7, done = true`); err != nil {
		t.Fatal(err)
	}
	err = db.Check(ctx)
	for _, want := range []string{"2 problems", "item a of run " + run.ID + " counts 7 steps but has 1", "done without a finish time or a result"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: got %v, want %q", err, want)
		}
	}
	if _, err := db.pool.Exec(ctx, `UPDATE items SET steps = 1, done = false`); err != nil {
		t.Fatal(err)
	}
}

// withPassword returns u with another password.
func withPassword(t *testing.T, u, pw string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p.User = url.UserPassword(p.User.Username(), pw)
	return p.String()
}

// TestOpenErrors: what cannot be reached or is refused fails at once, with
// a message naming where, and never the password.
func TestOpenErrors(t *testing.T) {
	base := pgtest.URL(t)
	cfg, err := pgconn.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	where := fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	mute := strings.Replace(withPassword(t, base, "s3cret-pw"), where, ln.Addr().String(), 1)

	tests := []struct {
		name, url string
		want      []string
	}{
		{"wrong password", withPassword(t, base, "s3cret-pw"),
			[]string{"cannot connect to PostgreSQL at " + where, "database " + cfg.Database, "user " + cfg.User, "password authentication failed"}},
		{"nothing listening", strings.Replace(withPassword(t, base, "s3cret-pw"), where, "127.0.0.1:1", 1),
			[]string{"cannot connect to PostgreSQL at 127.0.0.1:1 (database " + cfg.Database, "connection refused"}},
		{"no answer", pgtest.WithParam(t, mute, "connect_timeout", "1"),
			[]string{"cannot connect to PostgreSQL at " + ln.Addr().String(), "no answer within 1s"}},
		{"missing database", strings.Replace(base, "/"+cfg.Database, "/no_such_db", 1),
			[]string{`database "no_such_db" does not exist`, "database no_such_db"}},
		{"bad port", strings.Replace(withPassword(t, base, "s3cret-pw"), where, "127.0.0.1:99999", 1), []string{"cannot parse the URL: invalid port"}},
		{"bad escape", strings.Replace(base, "@", "%zz`: x@", 1), []string{"cannot parse the URL: failed to parse as URL"}},
		{"bad parameter", pgtest.WithParam(t, withPassword(t, base, "s3cret-pw"), "sslmode", "bogus"), []string{"sslmode"}},
		{"one connection", pgtest.WithParam(t, base, "pool_max_conns", "1"), []string{"pool_max_conns=1: want at least 2"}},
		{"missing schema", pgtest.WithParam(t, base, "search_path", "no_such_schema"),
			[]string{`no schema of search_path "no_such_schema" exists: create it first`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			db, err := Open(context.Background(), tt.url)
			if err == nil {
				db.Close()
				t.Fatal("got no error")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v to fail", d)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if pw, _ := url.Parse(tt.url); pw != nil {
				if p, ok := pw.User.Password(); ok && strings.Contains(msg, p) {
					t.Errorf("error %q shows the password", msg)
				}
			}
			if !strings.HasPrefix(msg, "open store "+Redact(tt.url)) {
				t.Errorf("error %q does not start with the redacted URL", msg)
			}
		})
	}
}

func TestPath(t *testing.T) {
	db := openTest(t)
	if p := db.Path(); strings.Contains(p, "@") && !strings.Contains(p, ":xxxxx@") {
		t.Errorf("Path %q shows a password", p)
	}
	if db.Pool() == nil || db.Pool().Ping(context.Background()) != nil {
		t.Error("Pool: not a live pool")
	}
}

// TestIDClash: a random run ID that is taken is drawn again.
func TestIDClash(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	ids := []string{"same", "same", "same", "other"}
	db.newID = func() string {
		id := ids[0]
		ids = ids[1:]
		return id
	}
	for _, want := range []string{"same", "other"} {
		r, created, err := db.OpenRun(ctx, tpo.Run{Kind: "serve"})
		if err != nil || !created || r.ID != want {
			t.Errorf("OpenRun: ID %q, created %v, %v; want %q", r.ID, created, err, want)
		}
	}
}
