package reward

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/tpoproject/tpo/internal/pep440"
)

// SigmoidSuspected reports whether every score lies in [0,1], the sign of
// a server that applied a sigmoid to a reward model's raw logits. Raw
// rewards of sequence-classification reward models are unbounded and
// regularly fall outside [0,1], so a run of scores that never does is
// suspicious. Exact 0 and 1 count as inside: a sigmoid computed in bf16
// rounds rewards above about +6 to exactly 1 (and far negative ones may
// underflow to 0). A raw reward of exactly 0 or 1 is rare, and since the
// rule needs every score so far to lie in [0,1], one such score among
// others outside it changes nothing. It reports false for no scores and
// for NaN.
func SigmoidSuspected(scores []float64) bool {
	if len(scores) == 0 {
		return false
	}
	for _, s := range scores {
		if !(s >= 0 && s <= 1) {
			return false
		}
	}
	return true
}

// checkFinite returns an error if v is NaN or infinite.
func checkFinite(v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("score is %v", v)
	}
	return nil
}

// snippet returns the start of a body for error messages.
func snippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// tokenizeResponse is vLLM's answer to POST /tokenize.
type tokenizeResponse struct {
	Count       int   `json:"count"`
	MaxModelLen int   `json:"max_model_len"`
	Tokens      []int `json:"tokens"`
}

// decodeTokenize reads a /tokenize response body.
func decodeTokenize(body []byte) (tokenizeResponse, error) {
	var r tokenizeResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("decoding /tokenize response: %w (body: %s)", err, snippet(body))
	}
	if len(r.Tokens) == 0 {
		return r, fmt.Errorf("/tokenize returned no tokens (body: %s)", snippet(body))
	}
	return r, nil
}

// decodeClassify reads the body of a vLLM /classify response for n inputs
// and returns, for each input, the first value of its probs, matched by the
// entries' index fields rather than by their order.
func decodeClassify(body []byte, n int) ([]float64, error) {
	var r struct {
		Data []struct {
			Index *int       `json:"index"`
			Probs []*float64 `json:"probs"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding /classify response: %w (body: %s)", err, snippet(body))
	}
	if len(r.Data) != n {
		return nil, fmt.Errorf("/classify returned %d results for %d inputs", len(r.Data), n)
	}
	scores := make([]float64, n)
	seen := make([]bool, n)
	for i, d := range r.Data {
		if d.Index == nil {
			return nil, fmt.Errorf("/classify result %d has no index", i)
		}
		idx := *d.Index
		if idx < 0 || idx >= n {
			return nil, fmt.Errorf("/classify result %d has index %d, want 0..%d", i, idx, n-1)
		}
		if seen[idx] {
			return nil, fmt.Errorf("/classify returned index %d twice", idx)
		}
		seen[idx] = true
		if len(d.Probs) == 0 || d.Probs[0] == nil {
			return nil, fmt.Errorf("/classify result for input %d has no probs", idx)
		}
		v := *d.Probs[0]
		if err := checkFinite(v); err != nil {
			return nil, fmt.Errorf("/classify result for input %d: %w", idx, err)
		}
		scores[idx] = v
	}
	return scores, nil
}

// decodePooling reads the body of a vLLM /pooling response for one
// conversation. The value of data[0].data is a list with one value per class
// for sequence classification (the first is the score) or, with tokenLevel, a
// list with one entry per token (a number or a list of per-class values) of
// which the last token's first value is the score.
func decodePooling(body []byte, tokenLevel bool) (float64, error) {
	var r struct {
		Data []struct {
			Data json.RawMessage `json:"data"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("decoding /pooling response: %w (body: %s)", err, snippet(body))
	}
	if len(r.Data) == 0 {
		return 0, fmt.Errorf("/pooling returned no data (body: %s)", snippet(body))
	}
	v, err := poolingValue(r.Data[0].Data, tokenLevel)
	if err != nil {
		return 0, fmt.Errorf("/pooling: %w", err)
	}
	return v, nil
}

// poolingValue extracts the score from the data of one pooling result.
func poolingValue(raw json.RawMessage, tokenLevel bool) (float64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errors.New("result has no data")
	}
	if raw[0] == '"' {
		return 0, errors.New("result data is a string (a base64 encoding_format is not supported)")
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err == nil {
		return v, checkFinite(v)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return 0, fmt.Errorf("result data is neither a number nor a list: %s", snippet(raw))
	}
	if len(list) == 0 {
		return 0, errors.New("result data is an empty list")
	}
	pick := list[0]
	if tokenLevel {
		pick = list[len(list)-1]
	} else if len(list) > 1 && isList(list[0]) {
		return 0, fmt.Errorf("result data holds per-token values for %d tokens; use a token-level setting for this model", len(list))
	}
	if isList(pick) {
		var inner []*float64
		if err := json.Unmarshal(pick, &inner); err != nil {
			return 0, fmt.Errorf("result data is not a list of numbers: %s", snippet(pick))
		}
		if len(inner) == 0 || inner[0] == nil {
			return 0, errors.New("result data holds an empty list")
		}
		return *inner[0], checkFinite(*inner[0])
	}
	if err := json.Unmarshal(pick, &v); err != nil || string(bytes.TrimSpace(pick)) == "null" {
		return 0, fmt.Errorf("result data holds a non-number: %s", snippet(pick))
	}
	return v, checkFinite(v)
}

func isList(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '['
}

// teiPrediction is one label's score in a TEI /predict response.
type teiPrediction struct {
	Score *float64 `json:"score"`
	Label string   `json:"label"`
}

// decodePredict reads the body of a TEI /predict response for a batch of n
// pairs and returns one score per pair: the score of the entry labelled label
// if label is not empty, else the score of the only entry, else the score of
// the entry labelled LABEL_0 (TEI sorts entries by descending score, so the
// first entry is not label 0). A single pair's answer may be a bare list of
// entries rather than a list holding one.
func decodePredict(body []byte, n int, label string) ([]float64, error) {
	var batch [][]teiPrediction
	if err := json.Unmarshal(body, &batch); err != nil {
		var single []teiPrediction
		if err2 := json.Unmarshal(body, &single); err2 != nil || n != 1 {
			return nil, fmt.Errorf("decoding /predict response: %w (body: %s)", err, snippet(body))
		}
		batch = [][]teiPrediction{single}
	}
	if len(batch) != n {
		return nil, fmt.Errorf("/predict returned %d results for %d inputs", len(batch), n)
	}
	scores := make([]float64, n)
	for i, preds := range batch {
		v, err := pickLabel(preds, label)
		if err != nil {
			return nil, fmt.Errorf("/predict result %d: %w", i, err)
		}
		scores[i] = v
	}
	return scores, nil
}

func pickLabel(preds []teiPrediction, label string) (float64, error) {
	if len(preds) == 0 {
		return 0, errors.New("no predictions")
	}
	var found *teiPrediction
	switch {
	case label != "":
		for i := range preds {
			if preds[i].Label == label {
				found = &preds[i]
				break
			}
		}
		if found == nil {
			return 0, fmt.Errorf("no label %q among %s", label, labelList(preds))
		}
	case len(preds) == 1:
		found = &preds[0]
	default:
		for i := range preds {
			if preds[i].Label == "LABEL_0" {
				found = &preds[i]
				break
			}
		}
		if found == nil {
			return 0, fmt.Errorf("the model has %d labels (%s); choose one with a label name", len(preds), labelList(preds))
		}
	}
	if found.Score == nil {
		return 0, fmt.Errorf("label %q has no score", found.Label)
	}
	return *found.Score, checkFinite(*found.Score)
}

func labelList(preds []teiPrediction) string {
	names := make([]string, len(preds))
	for i, p := range preds {
		names[i] = fmt.Sprintf("%q", p.Label)
	}
	return strings.Join(names, ", ")
}

// decodeExecOutput reads the standard output of a reward command: a JSON
// array of n numbers.
func decodeExecOutput(out []byte, n int) ([]float64, error) {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return nil, errors.New("the command printed nothing; want a JSON array of numbers")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(out, &items); err != nil {
		return nil, fmt.Errorf("output is not a JSON array of numbers: %w (output: %s)", err, snippet(out))
	}
	if len(items) != n {
		return nil, fmt.Errorf("output has %d numbers for %d responses", len(items), n)
	}
	scores := make([]float64, n)
	for i, raw := range items {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] == '"' || raw[0] == '[' || raw[0] == '{' || string(raw) == "null" ||
			string(raw) == "true" || string(raw) == "false" {
			return nil, fmt.Errorf("output element %d is not a number: %s", i, snippet(raw))
		}
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("output element %d is not a number: %s", i, snippet(raw))
		}
		scores[i] = v
	}
	return scores, nil
}

// decodeVersion reads vLLM's GET /version answer, {"version": "0.11.1"}.
func decodeVersion(body []byte) (pep440.Version, error) {
	var r struct {
		Version *string `json:"version"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return pep440.Version{}, fmt.Errorf("GET /version answered %s, not {\"version\": ...}", snippet(body))
	}
	if r.Version == nil {
		return pep440.Version{}, fmt.Errorf("GET /version answered %s, with no version", snippet(body))
	}
	v, err := pep440.Parse(*r.Version)
	if err != nil {
		return pep440.Version{}, fmt.Errorf("GET /version: %w", err)
	}
	return v, nil
}

// What a TEI validation error refuses.
const (
	refusedOther   = iota
	refusedTooLong // a pair longer than the model's input limit
	refusedBatch   // more pairs than --max-client-batch-size
)

// teiRefusal is what a TEI validation error message says.
type teiRefusal struct {
	kind  int
	limit int    // the input limit, or the largest batch allowed (0: not said)
	given int    // the input's length, or the batch's size (0: not said)
	unit  string // of an input limit: "tokens" or "characters"
}

// The messages of TEI's validation errors, from its source (v1.2 to v1.9):
// "batch size 64 > maximum allowed batch size 32" and "Input validation
// error: `inputs` must have less than 512 tokens. Given: 600" (or
// "characters", a limit TEI applies before tokenizing).
var (
	teiBatchRE   = regexp.MustCompile(`batch size ([0-9]+) > maximum allowed batch size ([0-9]+)`)
	teiTooLongRE = regexp.MustCompile(`must have less than ([0-9]+) (tokens|characters)(?:\. Given: ([0-9]+))?`)
)

// parseTEIRefusal reads a TEI error message. It tells a batch too large
// from an input too long by the message, since TEI answers both with the
// same status (413 before v1.9, 422 from it).
func parseTEIRefusal(msg string) teiRefusal {
	if m := teiBatchRE.FindStringSubmatch(msg); m != nil {
		return teiRefusal{kind: refusedBatch, given: atoiOrZero(m[1]), limit: atoiOrZero(m[2])}
	}
	if m := teiTooLongRE.FindStringSubmatch(msg); m != nil {
		return teiRefusal{kind: refusedTooLong, limit: atoiOrZero(m[1]), unit: m[2], given: atoiOrZero(m[3])}
	}
	return teiRefusal{}
}

func atoiOrZero(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// String describes an input-too-long refusal: "600 tokens, the limit is
// 512".
func (r teiRefusal) String() string {
	switch {
	case r.limit == 0:
		return "over its limit"
	case r.given == 0:
		return fmt.Sprintf("the limit is %d %s", r.limit, r.unit)
	}
	return fmt.Sprintf("%d %s, the limit is %d", r.given, r.unit, r.limit)
}
