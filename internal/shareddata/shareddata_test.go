package shareddata

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMissingFailsUnderCI(t *testing.T) {
	if os.Getenv("SHAREDDATA_CHILD") == "1" {
		Path(t, 1, "no/such/file")
		return
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"true", true, "shared data missing under CI=true"},
		{"", false, "shared data not found"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingFailsUnderCI$", "-test.v")
		cmd.Env = append(os.Environ(), "SHAREDDATA_CHILD=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail || !strings.Contains(string(out), tc.want) {
			t.Errorf("CI=%q: failed %v, output:\n%s", tc.ci, failed, out)
		}
	}
}
