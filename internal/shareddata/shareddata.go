// Package shareddata finds the project's evaluation data for tests: the
// directory shared/data beside the repository (../shared/data from its
// root), which this project's machines and CI have and a plain clone does
// not.
package shareddata

import (
	"os"
	"path/filepath"
	"testing"
)

// Path returns the path of rel within the shared data directory, for a
// test whose package lies depth directories below the repository's root.
// When the file is missing the test is skipped, except under CI=true, where
// it fails: CI must not pass by skipping what it should check.
func Path(t testing.TB, depth int, rel string) string {
	t.Helper()
	parts := []string{}
	for range depth + 1 {
		parts = append(parts, "..")
	}
	p := filepath.Join(append(parts, "shared", "data", rel)...)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared data missing under CI=true: %v (CI runs with shared/data beside the repository)", err)
		}
		t.Skipf("shared data not found: %v", err)
	}
	return p
}
