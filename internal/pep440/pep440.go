// Package pep440 reads and orders Python package versions as PEP 440
// defines them, for the versions Python model servers (vLLM) report:
// "0.11.1", "0.10.1.1", "0.11.1rc2", "0.12.0+cu128", "0.6.3.post1",
// "0.11.1.dev123+gabcdef".
//
// The order is PEP 440's: for the same release, a development release
// sorts before the pre-releases, which sort before the release, which
// sorts before its post-releases; a local version ("+cu128") sorts just
// after the same version without one. So 0.11.1.dev5 < 0.11.1rc1 < 0.11.1
// < 0.11.1+cu128 < 0.11.1.post1.
package pep440

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Version is a parsed version. The zero value is not a valid version.
type Version struct {
	Release []int  // e.g. [0 11 1]
	Pre     string // "a", "b", "rc" or "" for none
	PreN    int
	Post    int // -1 for none
	Dev     int // -1 for none
	Local   string
}

// The spellings PEP 440 accepts, after lowercasing: an optional "v",
// the release, then optional pre-, post-, development and local parts, with
// optional separators.
var pattern = regexp.MustCompile(`^v?([0-9]+(?:\.[0-9]+)*)` +
	`(?:[-_.]?(alpha|a|beta|b|preview|pre|c|rc)[-_.]?([0-9]*))?` +
	`(?:-([0-9]+)|[-_.]?(post|rev|r)[-_.]?([0-9]*))?` +
	`(?:[-_.]?(dev)[-_.]?([0-9]*))?` +
	`(?:\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?$`)

// Parse reads a version. Surrounding spaces are ignored.
func Parse(s string) (Version, error) {
	m := pattern.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return Version{}, fmt.Errorf("version %q is not a PEP 440 version", s)
	}
	v := Version{Post: -1, Dev: -1, Local: m[9]}
	for _, part := range strings.Split(m[1], ".") {
		n, err := number(s, part)
		if err != nil {
			return Version{}, err
		}
		v.Release = append(v.Release, n)
	}
	var err error
	if m[2] != "" {
		v.Pre = preName(m[2])
		if v.PreN, err = number(s, m[3]); err != nil {
			return Version{}, err
		}
	}
	switch {
	case m[4] != "":
		v.Post, err = number(s, m[4])
	case m[5] != "":
		v.Post, err = number(s, m[6])
	}
	if err == nil && m[7] != "" {
		v.Dev, err = number(s, m[8])
	}
	if err != nil {
		return Version{}, err
	}
	return v, nil
}

// MustParse is Parse for constants; it panics on a bad version.
func MustParse(s string) Version {
	v, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return v
}

// number reads a numeric part; an empty part is 0 ("rc" means "rc0").
func number(version, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("version %q: number %q is out of range", version, s)
	}
	return n, nil
}

func preName(s string) string {
	switch s {
	case "alpha", "a":
		return "a"
	case "beta", "b":
		return "b"
	}
	return "rc" // c, rc, pre, preview
}

// String returns the version in its normal form, e.g. "0.11.1rc2".
func (v Version) String() string {
	var b strings.Builder
	for i, n := range v.Release {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(n))
	}
	if v.Pre != "" {
		fmt.Fprintf(&b, "%s%d", v.Pre, v.PreN)
	}
	if v.Post >= 0 {
		fmt.Fprintf(&b, ".post%d", v.Post)
	}
	if v.Dev >= 0 {
		fmt.Fprintf(&b, ".dev%d", v.Dev)
	}
	if v.Local != "" {
		b.WriteString("+" + v.Local)
	}
	return b.String()
}

// Less reports whether v sorts before w.
func (v Version) Less(w Version) bool { return v.Compare(w) < 0 }

// Compare returns -1, 0 or +1 as v sorts before, with or after w.
func (v Version) Compare(w Version) int {
	if c := compareRelease(v.Release, w.Release); c != 0 {
		return c
	}
	if c := slices.Compare(v.preKey(), w.preKey()); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Post, w.Post); c != 0 { // -1 (none) sorts first
		return c
	}
	if c := cmp.Compare(devKey(v.Dev), devKey(w.Dev)); c != 0 {
		return c
	}
	return compareLocal(v.Local, w.Local)
}

// compareRelease compares releases as if padded with zeros.
func compareRelease(a, b []int) int {
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// preKey orders the pre-release part: a development release of the release
// itself first, then a, b, rc, then no pre-release.
func (v Version) preKey() []int {
	switch {
	case v.Pre == "" && v.Post < 0 && v.Dev >= 0:
		return []int{0, 0}
	case v.Pre == "a":
		return []int{1, v.PreN}
	case v.Pre == "b":
		return []int{2, v.PreN}
	case v.Pre == "rc":
		return []int{3, v.PreN}
	}
	return []int{4, 0}
}

// devKey sorts no development part after any.
func devKey(dev int) int {
	if dev < 0 {
		return math.MaxInt
	}
	return dev
}

// compareLocal orders local versions: none first, then segment by segment,
// numbers after words and numbers by value, then the longer one last.
func compareLocal(a, b string) int {
	if a == "" || b == "" {
		return cmp.Compare(len(a), len(b))
	}
	sep := func(r rune) bool { return r == '.' || r == '-' || r == '_' }
	as, bs := strings.FieldsFunc(a, sep), strings.FieldsFunc(b, sep)
	return slices.CompareFunc(as, bs, compareSegment)
}

func compareSegment(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(x, y)
	case errA == nil:
		return 1
	case errB == nil:
		return -1
	}
	return strings.Compare(a, b)
}
