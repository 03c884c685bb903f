package sim

import (
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ResponseMarker marks a response: [q=Q id=ID].
type ResponseMarker struct {
	Q  float64
	ID string
}

// Format writes the marker; q is written with three decimals.
func (m ResponseMarker) Format() string {
	return "[q=" + strconv.FormatFloat(m.Q, 'f', 3, 64) + " id=" + m.ID + "]"
}

// CritiqueMarker marks a critique: [critique c=HASH of=ID,ID].
type CritiqueMarker struct {
	Hash string
	Of   []string
}

// Format writes the marker.
func (m CritiqueMarker) Format() string {
	return "[critique c=" + m.Hash + " of=" + strings.Join(m.Of, ",") + "]"
}

// InstructionMarker marks instructions: [instr from=HASH].
type InstructionMarker struct {
	From string
}

// Format writes the marker.
func (m InstructionMarker) Format() string { return "[instr from=" + m.From + "]" }

// Markers are the markers found in a text, each kind in order of appearance.
type Markers struct {
	Responses    []ResponseMarker
	Critiques    []CritiqueMarker
	Instructions []InstructionMarker
}

// IDs returns the distinct ids of the response markers, sorted.
func (m Markers) IDs() []string {
	ids := make([]string, 0, len(m.Responses))
	for _, r := range m.Responses {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// BestQ returns the highest q of the response markers; ok is false when there
// are none.
func (m Markers) BestQ() (q float64, ok bool) {
	for i, r := range m.Responses {
		if i == 0 || r.Q > q {
			q = r.Q
		}
	}
	return q, len(m.Responses) > 0
}

// WorstQ returns the lowest q of the response markers; ok is false when
// there are none.
func (m Markers) WorstQ() (q float64, ok bool) {
	for i, r := range m.Responses {
		if i == 0 || r.Q < q {
			q = r.Q
		}
	}
	return q, len(m.Responses) > 0
}

// MeanQ returns the mean q of the response markers; ok is false when there
// are none.
func (m Markers) MeanQ() (q float64, ok bool) {
	if len(m.Responses) == 0 {
		return 0, false
	}
	for _, r := range m.Responses {
		q += r.Q
	}
	return q / float64(len(m.Responses)), true
}

const (
	hexPat    = `[0-9a-f]{1,16}`
	numberPat = `-?[0-9]+(?:\.[0-9]+)?`
)

var markerRE = regexp.MustCompile(`\[(?:` +
	`q=(` + numberPat + `) id=(` + hexPat + `)` +
	`|critique c=(` + hexPat + `) of=(` + hexPat + `(?:,` + hexPat + `)*)` +
	`|instr from=(` + hexPat + `)` +
	`)\]`)

// ParseMarkers returns the markers found in text. Text that only resembles a
// marker is ignored.
func ParseMarkers(text string) Markers {
	var m Markers
	for _, g := range markerRE.FindAllStringSubmatch(text, -1) {
		switch {
		case g[2] != "":
			q, err := strconv.ParseFloat(g[1], 64)
			if err != nil {
				continue
			}
			m.Responses = append(m.Responses, ResponseMarker{Q: q, ID: g[2]})
		case g[3] != "":
			m.Critiques = append(m.Critiques, CritiqueMarker{Hash: g[3], Of: strings.Split(g[4], ",")})
		case g[5] != "":
			m.Instructions = append(m.Instructions, InstructionMarker{From: g[5]})
		}
	}
	return m
}

// CritiqueHash is the c of a critique of the responses with these ids: a
// hash of the distinct ids, independent of their order and of the seed.
func CritiqueHash(ids []string) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	h := fnv.New64a()
	h.Write([]byte("critique"))
	for _, id := range ids {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return hex8(h.Sum64())
}

// derivesFrom reports whether from is the critique hash of a non-empty subset
// of ids (distinct, sorted). Up to 12 ids every subset is tried; beyond that
// the whole set, single ids and pairs.
func derivesFrom(from string, ids []string) bool {
	if len(ids) <= 12 {
		for mask := 1; mask < 1<<len(ids); mask++ {
			var sub []string
			for i, id := range ids {
				if mask&(1<<i) != 0 {
					sub = append(sub, id)
				}
			}
			if CritiqueHash(sub) == from {
				return true
			}
		}
		return false
	}
	if CritiqueHash(ids) == from {
		return true
	}
	for i := range ids {
		for j := i; j < len(ids); j++ {
			if CritiqueHash([]string{ids[i], ids[j]}) == from {
				return true
			}
		}
	}
	return false
}

// hex8 writes the low 32 bits of v as 8 hex digits.
func hex8(v uint64) string {
	s := strconv.FormatUint(v&0xffffffff, 16)
	return strings.Repeat("0", 8-len(s)) + s
}
