// Package postgres keeps runs in a PostgreSQL database, so that several
// processes on several machines can share one store: tpo run on many
// workers, tpo serve replicas, tpo ui, reports and exports. It implements
// tpo.Store and the read side (ListRuns, GetRun, ListItems, GetItem,
// Results, DeleteRun) with the semantics of package sqlite; both pass the
// same contract tests (package tpotest/storetest).
//
// # Connecting
//
// Open takes a URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE?PARAMS
// (postgresql:// too), read by pgx as libpq would: sslmode, connect_timeout
// (10 seconds when not given), pool_max_conns (8 when not given),
// application_name ("tpo"), search_path (to keep tpo's tables in a schema
// of their own) and the PG* environment variables and ~/.pgpass all work.
// The database must exist and use the UTF8 encoding. Open connects at once,
// so an unreachable server or a refused password is an error naming the
// host, port, database and user; passwords never appear in errors (Redact).
//
// # Schema
//
// Open applies the schema's migrations: versioned, in order, each recorded
// in the table schema_migrations (version, description, applied), never
// applied twice. Several processes may start at once: the one that
// migrates holds a transaction-scoped advisory lock, and the others wait
// for it and find the schema up to date. A database whose schema is newer
// than the program is refused with an error naming both versions.
//
// # Concurrency
//
// Every method is safe for concurrent use by goroutines and processes. Two
// processes opening a run with the same key get the same run (a unique key
// and INSERT ... ON CONFLICT DO NOTHING), starting an item twice records it
// once, and the writes of one item are serialized on its row, so that its
// aggregates (steps, best score, tokens) count every step. Each write is one
// round trip: its statements are pipelined in a batch that PostgreSQL runs
// as one transaction.
//
// # Types
//
// Times are timestamptz, kept to the microsecond; the database's clock
// stamps items and steps, so that workers on several machines agree. The
// run's configuration is jsonb. Conversations, steps and results are json:
// they hold text written by models and users, which may contain NUL
// characters that jsonb (like text) cannot hold, and they are always read
// whole; json keeps them byte for byte. In the text columns kept for search
// and listings (an item's prompt and error), NUL bytes and invalid UTF-8
// become U+FFFD; ids and keys that hold them are refused. Listings sort ids
// byte by byte (COLLATE "C"), as SQLite does, and searches use ILIKE.
//
// Files keeps the files of tpo serve's Files API (batch input and output)
// in the database too, so that every replica serves every file.
//
// Pool returns the connection pool, for packages that share the database
// (job queues, notifications).
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults for URLs that do not say.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultMaxConns       = 8
)

// DB is a run store in a PostgreSQL database. It is safe for concurrent use.
type DB struct {
	pool  *pgxpool.Pool
	url   string        // redacted
	newID func() string // makes run IDs; tests replace it
}

// Open connects to the database at url (see the package documentation),
// creating or upgrading its schema as needed.
func Open(ctx context.Context, url string) (*DB, error) {
	name := Redact(url)
	cfg, err := config(url)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", name, connectError(&cfg.ConnConfig.Config, err))
	}
	db := &DB{pool: pool, url: name, newID: randomID}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	return db, nil
}

// config parses url and fills in tpo's defaults.
func config(raw string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, parseError(err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if !strings.Contains(raw, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConns < 2 {
		// Results holds a connection while its callback may write.
		return nil, fmt.Errorf("pool_max_conns=%d: want at least 2", cfg.MaxConns)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok && os.Getenv("PGAPPNAME") == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "tpo"
	}
	return cfg, nil
}

// parseError restates pgx's error about a connection string that does not
// parse without the string, whose password pgx's own redaction, best
// effort, might miss: Open's errors name the string as Redact gives it.
func parseError(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err
	}
	msg := pe.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+len("`: "):]
	}
	return fmt.Errorf("cannot parse the URL: %s", msg)
}

// Close closes every connection of the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Path returns the URL the store was opened with, its password redacted.
func (db *DB) Path() string { return db.url }

// Pool returns the store's connection pool, for packages that share the
// database. It is closed by Close.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// randomID returns 12 random hex digits.
func randomID() string {
	var b [6]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// connectErr says why the database could not be reached, in one line.
type connectErr struct {
	Where string // host:port (or socket directory), database and user
	Cause string
	Err   error // pgx's error, with every address tried
}

func (e *connectErr) Error() string {
	return fmt.Sprintf("cannot connect to PostgreSQL at %s: %s", e.Where, e.Cause)
}

func (e *connectErr) Unwrap() error { return e.Err }

// connectError describes a failed connection to the server of cfg.
func connectError(cfg *pgconn.Config, err error) error {
	hosts := []string{net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))}
	for _, f := range cfg.Fallbacks {
		if h := net.JoinHostPort(f.Host, fmt.Sprint(f.Port)); h != hosts[len(hosts)-1] {
			hosts = append(hosts, h)
		}
	}
	where := fmt.Sprintf("%s (database %s, user %s)", strings.Join(hosts, ", "), cfg.Database, cfg.User)
	return &connectErr{Where: where, Cause: connectCause(err, cfg.ConnectTimeout), Err: err}
}

// connectCause finds the reason in pgx's error, which lists every address
// and TLS mode tried.
func connectCause(err error, timeout time.Duration) string {
	var pe *pgconn.PgError
	var dns *net.DNSError
	switch {
	case errors.As(err, &pe):
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is the server running, and listening there?)"
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve host %s: %v", dns.Name, dns.Err)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("no answer within %v (connect_timeout)", timeout)
	}
	// The last line is the last attempt.
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Redact returns a connection string with its password replaced by xxxxx,
// for messages and logs: the password of a URL's user information and of
// a password or sslpassword parameter (in a URL's query or a key=value
// string). In a URL, everything from the first ":" to the last "@" goes,
// as it may all be password (PostgreSQL reads the password up to the first
// "@", net/url up to the last).
func Redact(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return kvPassword.ReplaceAllString(s, "${1}xxxxx")
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPW := strings.Cut(rest[:at], ":"); hasPW {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	if before, query, ok := strings.Cut(rest, "?"); ok {
		rest = before + "?" + redactQuery(query)
	}
	return scheme + "://" + rest
}

// kvPassword matches the value of password in a key=value string: a word,
// or a quoted string with backslash escapes.
var kvPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)

// redactQuery replaces the value of every password parameter of a URL's
// query.
func redactQuery(query string) string {
	if query == "" {
		return query
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		k, _, _ := strings.Cut(p, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			key = k
		}
		if strings.EqualFold(key, "password") || strings.EqualFold(key, "sslpassword") {
			params[i] = k + "=xxxxx"
		}
	}
	return strings.Join(params, "&")
}

// cleanText makes s fit a text column: NUL bytes and invalid UTF-8 become
// U+FFFD.
func cleanText(s string) string {
	if storable(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// checkKey returns an error unless s fits a text column as it is.
func checkKey(what, s string) error {
	if !storable(s) {
		return fmt.Errorf("%s %q: PostgreSQL cannot store a NUL byte or invalid UTF-8 in text", what, s)
	}
	return nil
}

// storable reports whether s fits a text column as it is. A key that does
// not was never stored: reads of it find nothing, rather than sending
// PostgreSQL a text it refuses.
func storable(s string) bool {
	return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s)
}
