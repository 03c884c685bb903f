package guard

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
)

// Keys are the API keys a server accepts, kept as SHA-256 digests and
// compared in constant time. The zero Keys require none.
type Keys struct {
	sums [][sha256.Size]byte
}

// NewKeys returns keys, each trimmed of the spaces around it; a key that
// is blank after trimming is an error naming its place in the list.
func NewKeys(keys []string) (Keys, error) {
	var k Keys
	for i, key := range keys {
		if key = strings.TrimSpace(key); key == "" {
			return Keys{}, fmt.Errorf("API key %d of %d is blank", i+1, len(keys))
		}
		k.sums = append(k.sums, sha256.Sum256([]byte(key)))
	}
	return k, nil
}

// Required reports whether a request must carry one of the keys.
func (k Keys) Required() bool { return len(k.sums) > 0 }

// Match reports whether key, trimmed, is one of the keys, comparing with
// every one in constant time.
func (k Keys) Match(key string) bool {
	got := sha256.Sum256([]byte(strings.TrimSpace(key)))
	ok := 0
	for _, s := range k.sums {
		ok |= subtle.ConstantTimeCompare(got[:], s[:])
	}
	return ok == 1
}

// Bearer returns the token of r's "Authorization: Bearer TOKEN" header
// (the scheme's case ignored), and whether it has one.
func Bearer(r *http.Request) (string, bool) {
	const prefix = "bearer "
	h := r.Header.Get("Authorization")
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return h[len(prefix):], true
}
