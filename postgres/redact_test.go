package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://tpo:s3cret@db.example:5432/tpo?sslmode=require", "postgres://tpo:xxxxx@db.example:5432/tpo?sslmode=require"},
		{"postgresql://tpo:s3cret@localhost/tpo", "postgresql://tpo:xxxxx@localhost/tpo"},
		{"postgres://tpo@localhost/tpo", "postgres://tpo@localhost/tpo"},
		{"postgres://localhost/tpo", "postgres://localhost/tpo"},
		{"postgres:///tpo?host=/var/run/postgresql", "postgres:///tpo?host=/var/run/postgresql"},
		{"postgres://tpo:p%40ss%2Fw@localhost/tpo", "postgres://tpo:xxxxx@localhost/tpo"},
		{"postgres://tpo:p@ss@localhost/tpo", "postgres://tpo:xxxxx@localhost/tpo"},
		{"postgres://localhost/tpo?user=tpo&password=s3cret&sslmode=disable", "postgres://localhost/tpo?user=tpo&password=xxxxx&sslmode=disable"},
		{"postgres://localhost/tpo?PASSWORD=s3cret", "postgres://localhost/tpo?PASSWORD=xxxxx"},
		{"postgres://localhost/tpo?pass%77ord=s3cret", "postgres://localhost/tpo?pass%77ord=xxxxx"},
		{"postgres://localhost/tpo?password=s3cret&user=a@b", "postgres://localhost/tpo?password=xxxxx&user=a@b"},
		{"postgres://:s3cret@localhost/tpo", "postgres://:xxxxx@localhost/tpo"},
		// Not URLs that net/url reads.
		{"postgres://tpo:s3cret@h1:5432,h2:5433/tpo?password=s3cret", "postgres://tpo:xxxxx@h1:5432,h2:5433/tpo?password=xxxxx"},
		{"postgres://tpo:pa/ss?wo#rd@localhost/tpo", "postgres://tpo:xxxxx@localhost/tpo"},
		{"postgres://tpo:s3cret@[::1/tpo", "postgres://tpo:xxxxx@[::1/tpo"},
		// key=value strings.
		{"host=localhost user=tpo password=s3cret dbname=tpo", "host=localhost user=tpo password=xxxxx dbname=tpo"},
		{"host=localhost password = 's3 cr\\'et' dbname=tpo", "host=localhost password = xxxxx dbname=tpo"},
		{"host=h sslpassword=s3cret", "host=h sslpassword=xxxxx"},
		{"postgres://h/db?sslcert=c&sslpassword=s3cret", "postgres://h/db?sslcert=c&sslpassword=xxxxx"},
		{"tpo.db", "tpo.db"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzRedact: whatever password pgx would read from a connection string,
// it does not read it from the redacted string.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"postgres://tpo:s3cret@localhost:5432/tpo?sslmode=disable",
		"postgresql://u:p%40ss@h1:1,h2:2/db?password=x&user=y",
		"postgres://u:pa/ss@host/db",
		"host=h password='a b' dbname=d",
		"user=u password=secret",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		red := Redact(s)
		cfg, err := pgconn.ParseConfig(s)
		if err != nil || cfg.Password == "" || cfg.Password == "xxxxx" {
			return
		}
		if rc, err := pgconn.ParseConfig(red); err == nil && rc.Password == cfg.Password {
			t.Errorf("Redact(%q) = %q still gives the password %q", s, red, cfg.Password)
		}
		if len(cfg.Password) >= 4 && strings.Contains(red, cfg.Password) && !strings.Contains(s, "xxxxx") &&
			!strings.Contains(strings.Replace(s, cfg.Password, "", 1), cfg.Password) {
			t.Errorf("Redact(%q) = %q shows the password %q", s, red, cfg.Password)
		}
	})
}
