package sim

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseMarkers(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Markers
	}{
		{"empty", "", Markers{}},
		{"plain text", "no markers [here] q=1 id=2", Markers{}},
		{"response", "intro [q=1.250 id=9f3a07c2] rest",
			Markers{Responses: []ResponseMarker{{Q: 1.25, ID: "9f3a07c2"}}}},
		{"negative integer q", "[q=-3 id=a]",
			Markers{Responses: []ResponseMarker{{Q: -3, ID: "a"}}}},
		{"critique", "[critique c=0b1e55aa of=11aa22bb,9f3a07c2]",
			Markers{Critiques: []CritiqueMarker{{Hash: "0b1e55aa", Of: []string{"11aa22bb", "9f3a07c2"}}}}},
		{"instruction", "x[instr from=0b1e55aa]y",
			Markers{Instructions: []InstructionMarker{{From: "0b1e55aa"}}}},
		{"all kinds in order", "[q=2 id=b] [instr from=c] [q=1 id=a] [critique c=d of=a]",
			Markers{
				Responses:    []ResponseMarker{{Q: 2, ID: "b"}, {Q: 1, ID: "a"}},
				Critiques:    []CritiqueMarker{{Hash: "d", Of: []string{"a"}}},
				Instructions: []InstructionMarker{{From: "c"}},
			}},
		{"uppercase hex is not a marker", "[q=1 id=ABCD]", Markers{}},
		{"empty of is not a marker", "[critique c=ab of=]", Markers{}},
		{"extra space is not a marker", "[q=1  id=ab]", Markers{}},
		{"id too long", "[q=1 id=0123456789abcdef0]", Markers{}},
		{"q with exponent", "[q=1e5 id=ab]", Markers{}},
		{"nested brackets", "[[q=0.5 id=ab]]",
			Markers{Responses: []ResponseMarker{{Q: 0.5, ID: "ab"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseMarkers(tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseMarkers(%q) = %+v, want %+v", tt.text, got, tt.want)
			}
		})
	}
}

func TestMarkersIDsBestMean(t *testing.T) {
	m := ParseMarkers("[q=1 id=bb] [q=3 id=aa] [q=-1 id=bb]")
	if got, want := m.IDs(), []string{"aa", "bb"}; !reflect.DeepEqual(got, want) {
		t.Errorf("IDs() = %v, want %v", got, want)
	}
	if q, ok := m.BestQ(); !ok || q != 3 {
		t.Errorf("BestQ() = %v, %v, want 3, true", q, ok)
	}
	if q, ok := m.MeanQ(); !ok || q != 1 {
		t.Errorf("MeanQ() = %v, %v, want 1, true", q, ok)
	}
	if _, ok := (Markers{}).BestQ(); ok {
		t.Error("BestQ() of no markers: ok = true")
	}
	if _, ok := (Markers{}).MeanQ(); ok {
		t.Error("MeanQ() of no markers: ok = true")
	}
}

func TestFormatParseRoundTrip(t *testing.T) {
	text := ResponseMarker{Q: -0.1234, ID: "00ff00ff"}.Format() + " and " +
		CritiqueMarker{Hash: "12345678", Of: []string{"aa", "bb"}}.Format() +
		InstructionMarker{From: "12345678"}.Format()
	want := Markers{
		Responses:    []ResponseMarker{{Q: -0.123, ID: "00ff00ff"}},
		Critiques:    []CritiqueMarker{{Hash: "12345678", Of: []string{"aa", "bb"}}},
		Instructions: []InstructionMarker{{From: "12345678"}},
	}
	if got := ParseMarkers(text); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMarkers(%q) = %+v, want %+v", text, got, want)
	}
}

func TestCritiqueHash(t *testing.T) {
	a := CritiqueHash([]string{"aa", "bb"})
	if b := CritiqueHash([]string{"bb", "aa", "bb"}); a != b {
		t.Errorf("hash depends on order or duplicates: %s vs %s", a, b)
	}
	if c := CritiqueHash([]string{"aa"}); c == a {
		t.Errorf("hash of {aa} equals hash of {aa,bb}: %s", c)
	}
	if len(a) != 8 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("hash %q is not 8 hex digits", a)
	}
	ids := []string{"aa", "bb", "cc"}
	tests := []struct {
		from string
		ids  []string
		want bool
	}{
		{CritiqueHash([]string{"aa", "cc"}), ids, true},
		{CritiqueHash([]string{"bb"}), ids, true},
		{CritiqueHash(ids), ids, true},
		{CritiqueHash([]string{"aa", "dd"}), ids, false},
		{CritiqueHash([]string{"aa"}), nil, false},
	}
	for _, tt := range tests {
		if got := derivesFrom(tt.from, tt.ids); got != tt.want {
			t.Errorf("derivesFrom(%s, %v) = %v, want %v", tt.from, tt.ids, got, tt.want)
		}
	}
	// Beyond 12 ids only the whole set, single ids and pairs are tried.
	var many []string
	for i := range 14 {
		many = append(many, hex8(uint64(i)))
	}
	if !derivesFrom(CritiqueHash(many[3:5]), many) {
		t.Error("derivesFrom misses a pair among 14 ids")
	}
	if !derivesFrom(CritiqueHash(many), many) {
		t.Error("derivesFrom misses the whole set of 14 ids")
	}
}

func FuzzParseMarkers(f *testing.F) {
	for _, s := range []string{
		"", "[q=1.250 id=9f3a07c2] words", "[critique c=0b1e55aa of=11aa22bb,9f3a07c2]",
		"[instr from=0b1e55aa]", "[q=-999999.999999999 id=ffffffffffffffff]", "[[q=1 id=a][instr from=b]]",
		"[q=1 id=a", "[critique c=a of=b,]", "\x00[q=\xff id=a]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		m := ParseMarkers(text)
		// Formatting what was found and parsing it again finds the same
		// markers (q rounded to three decimals).
		var b strings.Builder
		for _, r := range m.Responses {
			if math.IsNaN(r.Q) || math.IsInf(r.Q, 0) {
				t.Fatalf("q = %v from %q", r.Q, text)
			}
			b.WriteString(r.Format())
		}
		for _, c := range m.Critiques {
			if len(c.Of) == 0 {
				t.Fatalf("critique without ids from %q", text)
			}
			b.WriteString(c.Format())
		}
		for _, in := range m.Instructions {
			b.WriteString(in.Format())
		}
		again := ParseMarkers(b.String())
		if len(again.Responses) != len(m.Responses) || len(again.Critiques) != len(m.Critiques) ||
			len(again.Instructions) != len(m.Instructions) {
			t.Fatalf("reparse of %q found %+v, first parse %+v", b.String(), again, m)
		}
		for i, r := range m.Responses {
			if got := again.Responses[i]; got.ID != r.ID || math.Abs(got.Q-r.Q) > 0.0005 {
				t.Errorf("response %d: reparsed %+v, want %+v", i, got, r)
			}
		}
		if !reflect.DeepEqual(again.Critiques, m.Critiques) || !reflect.DeepEqual(again.Instructions, m.Instructions) {
			t.Errorf("reparse differs: %+v vs %+v", again, m)
		}
		// Every text yields a finite reward.
		if r := Reward(text, 0.1); math.IsNaN(r) || math.IsInf(r, 0) {
			t.Errorf("Reward(%q) = %v", text, r)
		}
	})
}

func FuzzTokens(f *testing.F) {
	for _, s := range []string{"", "a", "abcd", "abcde", "\x00\xff\x00", "héllo wörld"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := encodeTokens(s)
		if len(ids) != tokenCount(s) {
			t.Errorf("len(encodeTokens(%q)) = %d, want %d", s, len(ids), tokenCount(s))
		}
		got, err := decodeTokens(ids)
		if err != nil || got != s {
			t.Errorf("decodeTokens(encodeTokens(%q)) = %q, %v", s, got, err)
		}
	})
}

func FuzzClassifyInputs(f *testing.F) {
	for _, s := range []string{`"text"`, `["a","b"]`, `[1,2,3]`, `[[1,2],[3]]`, `[[0]]`, `[[-5]]`,
		`[[4362470401]]`, `{}`, `null`, `[]`, `[[]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		texts, err := classifyInputs(json.RawMessage(raw))
		if err != nil && texts != nil {
			t.Errorf("classifyInputs(%q) returned texts %q with error %v", raw, texts, err)
		}
	})
}

func FuzzChatMessage(f *testing.F) {
	for _, s := range []string{`{"role":"user","content":"hi"}`, `{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}`,
		`{"role":"assistant","content":null}`, `{"content":5}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m chatMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %+v: %v", m, err)
		}
		var again chatMessage
		if err := json.Unmarshal(b, &again); err != nil || again != m {
			t.Errorf("round trip of %+v: %+v, %v", m, again, err)
		}
	})
}
