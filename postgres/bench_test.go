package postgres

import (
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest/storetest"
)

// BenchmarkSaveStep measures one SaveStep (see storetest.BenchSaveStep).
func BenchmarkSaveStep(b *testing.B) {
	storetest.BenchSaveStep(b, func(b *testing.B) tpo.Store { return openTest(b) })
}

// BenchmarkSaveStep64 measures SaveStep from 64 goroutines at once.
func BenchmarkSaveStep64(b *testing.B) {
	storetest.BenchSaveStep64(b, func(b *testing.B) tpo.Store { return openTest(b) })
}
