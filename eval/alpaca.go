package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"unicode/utf8"
)

// Annotation is one AlpacaEval annotation: a judge's preference between the
// baseline's output (output_1, by generator_1) and the evaluated model's
// (output_2, by generator_2) for one instruction. The JSON field names are
// AlpacaEval's, so its annotations.json files read as they are, and files
// written from Annotation values read in AlpacaEval's tools.
type Annotation struct {
	Dataset     string `json:"dataset,omitempty"`
	Instruction string `json:"instruction"`
	Output1     string `json:"output_1"`
	Generator1  string `json:"generator_1"`
	Output2     string `json:"output_2"`
	Generator2  string `json:"generator_2"`
	Annotator   string `json:"annotator,omitempty"`
	// Preference is 1 when the baseline's output is preferred, 2 when the
	// model's is, 1.5 for a draw, and anything in between for a weighted
	// preference; nil (JSON null) when the judge gave none. 0 is an old
	// spelling of a draw.
	Preference *float64 `json:"preference"`
	// RawCompletion is the judge's reply (AlpacaEval's name), any JSON
	// value: AlpacaEval's weighted_alpaca_eval_gpt4_turbo keeps an object
	// (the completion with its token log-probabilities) or null, tpo's
	// judge a string. It is kept compact, and null is dropped. ID and
	// Error are tpo's additions: the item's id in the dataset, and why a
	// judge request failed, so that judging again redoes it.
	RawCompletion json.RawMessage `json:"raw_completion,omitempty"`
	ID            string          `json:"id,omitempty"`
	Error         string          `json:"error,omitempty"`
}

// annotationFields is Annotation without its methods, so that
// UnmarshalJSON can decode into it.
type annotationFields Annotation

// UnmarshalJSON reads an annotation as AlpacaEval writes it, leniently
// where tpo only shows a field: dataset, annotator, generator_1 and
// generator_2 may be any JSON value (a string is taken as it is, anything
// else as its JSON text, null as ""). The texts the metrics read
// (instruction, output_1, output_2) must be strings or null, and the
// preference a number or null. Fields tpo does not know
// (time_per_example, price_per_example, glm_preference...) are ignored.
func (a *Annotation) UnmarshalJSON(data []byte) error {
	var w struct {
		*annotationFields
		Dataset    json.RawMessage `json:"dataset"`
		Annotator  json.RawMessage `json:"annotator"`
		Generator1 json.RawMessage `json:"generator_1"`
		Generator2 json.RawMessage `json:"generator_2"`
	}
	w.annotationFields = (*annotationFields)(a)
	if err := json.Unmarshal(data, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// The field's name, not its path through w.
			te.Field = strings.TrimPrefix(te.Field, "annotationFields.")
		}
		return err
	}
	a.Dataset, a.Annotator = jsonText(w.Dataset), jsonText(w.Annotator)
	a.Generator1, a.Generator2 = jsonText(w.Generator1), jsonText(w.Generator2)
	a.RawCompletion = compactJSON(a.RawCompletion)
	return nil
}

// jsonText is a JSON value as text: a string's value, null's "", else the
// compact JSON.
func jsonText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(compactJSON(v))
}

// compactJSON returns v without insignificant space; nil for null or
// nothing.
func compactJSON(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil || b.String() == "null" || b.Len() == 0 {
		return nil
	}
	return b.Bytes()
}

// AlpacaMetrics are the figures AlpacaEval's leaderboard reports for a set
// of annotations, under its column names. Rates are in percent.
type AlpacaMetrics struct {
	// WinRate is the mean over the annotations of (preference - 1), in
	// percent: a weighted preference counts as the fraction it is.
	WinRate float64 `json:"win_rate"`
	// StandardError is the standard error of that mean (sample standard
	// deviation over the square root of n), in percent; 0 with fewer than
	// two annotations.
	StandardError float64 `json:"standard_error"`
	// NWins counts preferences above 1.5 (the model's wins), NWinsBase
	// those below (the baseline's wins: the model's losses), NDraws those
	// exactly 1.5 (or 0), NTotal the three together.
	NWins     int `json:"n_wins"`
	NWinsBase int `json:"n_wins_base"`
	NDraws    int `json:"n_draws"`
	NTotal    int `json:"n_total"`
	// DiscreteWinRate rounds each preference to a win, a draw or a loss
	// first: (NWins + NDraws/2) / NTotal, in percent.
	DiscreteWinRate float64 `json:"discrete_win_rate"`
	// AvgLength is the mean length of the model's outputs in characters
	// (Unicode code points), truncated to an integer, over every
	// annotation.
	AvgLength int `json:"avg_length"`
	// NotPreferences counts the annotations left out because their
	// preference is null or outside [1, 2], as AlpacaEval leaves them out.
	NotPreferences int `json:"n_not_preferences"`
}

// preferenceValue returns the annotation's preference in [1, 2] (an old 0
// read as the draw 1.5) and whether it is one.
func (a Annotation) preferenceValue() (float64, bool) {
	if a.Preference == nil || math.IsNaN(*a.Preference) {
		return 0, false
	}
	p := *a.Preference
	if p == 0 {
		p = 1.5
	}
	return p, p >= 1 && p <= 2
}

// AlpacaEvalMetrics computes AlpacaEval's leaderboard figures for
// annotations, as AlpacaEval computes them (pandas on NumPy): the sums are
// NumPy's pairwise sums, so that the figures are AlpacaEval's to the last
// bit, or within a few units in the last place.
func AlpacaEvalMetrics(anns []Annotation) AlpacaMetrics {
	var m AlpacaMetrics
	var ps, discrete []float64
	lengths := 0
	for _, a := range anns {
		lengths += utf8.RuneCountInString(a.Output2)
		p, ok := a.preferenceValue()
		if !ok {
			m.NotPreferences++
			continue
		}
		p--
		ps = append(ps, p)
		switch {
		case p > 0.5:
			m.NWins++
			discrete = append(discrete, 1)
		case p < 0.5:
			m.NWinsBase++
			discrete = append(discrete, 0)
		default:
			m.NDraws++
			discrete = append(discrete, 0.5)
		}
	}
	if len(anns) > 0 {
		m.AvgLength = lengths / len(anns)
	}
	m.NTotal = len(ps)
	if m.NTotal == 0 {
		return m
	}
	m.WinRate = pandasMean(ps) * 100
	m.StandardError = pandasSem(ps) * 100
	m.DiscreteWinRate = pandasMean(discrete) * 100
	return m
}

// pandasMean is the mean as pandas computes it: NumPy's sum over n.
func pandasMean(xs []float64) float64 {
	return numpySum(xs) / float64(len(xs))
}

// pandasSem is the standard error of the mean as pandas' Series.sem
// computes it: the square root of the sample variance (n-1) over the
// square root of n; 0 for fewer than two values.
func pandasSem(xs []float64) float64 {
	n := len(xs)
	if n < 2 {
		return 0
	}
	avg := pandasMean(xs)
	sq := make([]float64, n)
	for i, x := range xs {
		sq[i] = (avg - x) * (avg - x)
	}
	return math.Sqrt(numpySum(sq)/float64(n-1)) / math.Sqrt(float64(n))
}

// numpySum adds xs in the order NumPy's sum does: pairwise, in blocks of
// at most 128 values, each summed in eight interleaved partial sums.
func numpySum(xs []float64) float64 {
	n := len(xs)
	switch {
	case n < 8:
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s
	case n <= 128:
		var r [8]float64
		copy(r[:], xs[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for j := range r {
				r[j] += xs[i+j]
			}
		}
		s := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			s += xs[i]
		}
		return s
	}
	half := n / 2
	half -= half % 8
	return numpySum(xs[:half]) + numpySum(xs[half:])
}

// ReadAnnotationsFile reads AlpacaEval annotations from path: a JSON array
// (AlpacaEval's annotations.json) or JSON Lines, one annotation a line.
// Errors name the file and the line (and, for an array, the element).
func ReadAnnotationsFile(path string) ([]Annotation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ReadAnnotations(data, path)
}

// ReadAnnotations reads annotations from data, a JSON array or JSON Lines;
// name prefixes the positions of errors.
func ReadAnnotations(data []byte, name string) ([]Annotation, error) {
	if t := bytes.TrimLeft(data, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '[' {
		return readJSONArray[Annotation](data, name, checkAnnotation)
	}
	var out []Annotation
	err := eachJSONLine(bytes.NewReader(data), name, func(line []byte, where string) error {
		var a Annotation
		if err := json.Unmarshal(line, &a); err != nil {
			return fmt.Errorf("%s: %w", where, describeJSONError(err))
		}
		if err := checkAnnotation(a); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// checkAnnotation rejects an annotation without the fields every metric
// needs.
func checkAnnotation(a Annotation) error {
	if a.Instruction == "" {
		return errors.New(`field "instruction": missing or empty`)
	}
	return nil
}

// readJSONArray decodes a JSON array of T from data, checking each element
// with check; errors name the line and the element's index.
func readJSONArray[T any](data []byte, name string, check func(T) error) ([]T, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	where := func(i int) string {
		return fmt.Sprintf("%s:%d (element %d)", name, lineAt(data, dec.InputOffset()), i)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, lineAt(data, dec.InputOffset()), err)
	}
	var out []T
	for i := 0; dec.More(); i++ {
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s: %w", where(i), describeJSONError(err))
		}
		if err := check(v); err != nil {
			return nil, fmt.Errorf("%s: %w", where(i), err)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, lineAt(data, dec.InputOffset()), err)
	}
	return out, nil
}

// lineAt returns the 1-based line of data holding byte offset off.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// describeJSONError rewrites a type error as the field, what is wanted and
// what was found.
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("field %q: want %s, got %s", te.Field, te.Type, te.Value)
	}
	return err
}

// eachJSONLine calls fn with every non-blank line of r and where it is
// (name:line).
func eachJSONLine(r io.Reader, name string, fn func(line []byte, where string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if err := fn(b, fmt.Sprintf("%s:%d", name, n)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return nil
}
