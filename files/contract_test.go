package files_test

import (
	"path/filepath"
	"testing"

	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/tpotest/storetest"
)

func TestFilesContract(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T, limit int64) files.Store {
		d, err := files.Open(filepath.Join(t.TempDir(), "files"), limit)
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}
