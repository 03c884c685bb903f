package eval

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The GLMs of AlpacaEval's length-controlled win rate that LengthControlled
// fits. Both model a preference as
//
//	sigmoid(w1 tanh(std_delta_len) + w2 instruction_difficulty + w3 not_gamed_baseline)
//
// where std_delta_len is the baseline's length minus the model's, in
// characters, over its standard deviation; the LC win rate is the mean
// prediction with std_delta_len set to 0.
const (
	// GLMLengthControlled is AlpacaEval's default (the leaderboard's LC):
	// the model's annotations are fitted together with those of the gamed
	// baselines (the baseline told to be verbose or concise) at weight 0.1,
	// which pulls the length and difficulty weights towards theirs.
	GLMLengthControlled = "length_controlled_v1"
	// GLMLengthControlledNoReg fits the model's annotations alone.
	GLMLengthControlledNoReg = "length_controlled_noreg"
)

// gamedWeight is the weight of a gamed baseline's annotation in
// length_controlled_v1: its regularization strength 0.2, halved because
// there are two gamed baselines.
const gamedWeight = 0.2 / 2

// LCData is what AlpacaEval publishes for its length-controlled win rate,
// beside its code: each instruction's difficulty (instruction_difficulty.csv)
// and the annotations of the gamed baselines (df_gamed.csv, which holds the
// difficulties too). Difficulty is indexed by the instruction's position in
// the AlpacaEval set.
type LCData struct {
	Difficulty []float64
	// Gamed are the gamed baselines' annotations, as training rows:
	// features [tanh(std_delta_len), instruction_difficulty,
	// not_gamed_baseline] and a preference in [0, 1]. Empty for
	// length_controlled_noreg.
	Gamed weightedRows
	// Published are the length_controlled_v1 weights AlpacaEval fitted
	// for the models of its leaderboard (its weights/.../
	// baseline_gpt4_1106_preview.csv), by model: tanh(std_delta_len),
	// instruction_difficulty, not_gamed_baseline.
	Published map[string][3]float64
}

// Where an LCResult's weights come from.
const (
	// LCPublishedWeights: AlpacaEval's own weights for the model, so the
	// figure is AlpacaEval's LC.
	LCPublishedWeights = "published"
	// LCFitted: tpo's fit of the GLM to the annotations.
	LCFitted = "fitted"
)

// GLM names the GLM the data allow: length_controlled_v1 with the gamed
// baselines' annotations, else length_controlled_noreg.
func (d LCData) GLM() string {
	if len(d.Gamed.X) > 0 {
		return GLMLengthControlled
	}
	return GLMLengthControlledNoReg
}

// LCResult is a length-controlled win rate, under AlpacaEval's names.
type LCResult struct {
	WinRate       float64 `json:"length_controlled_winrate"`
	StandardError float64 `json:"lc_standard_error"`
	GLM           string  `json:"lc_glm"`
	// Weights are the fitted weights of tanh(std_delta_len),
	// instruction_difficulty and not_gamed_baseline; C is the inverse
	// penalty cross-validation chose.
	Weights [3]float64 `json:"lc_weights"`
	C       float64    `json:"lc_c"`
	// Source says where the weights come from: LCPublishedWeights or
	// LCFitted.
	Source string `json:"lc_weights_source"`
}

// LengthControlled computes AlpacaEval's length-controlled win rate of the
// annotations. For a model whose weights AlpacaEval published (data.Published
// names the annotations' generator_2) it is AlpacaEval's own figure, from
// those weights as its predict_winrate computes it. Otherwise it fits the
// GLM: an L1-penalized logistic regression without
// intercept, the penalty chosen among ten values by 5-fold cross-validation
// (the folds are tpo's own: annotation i is in fold i mod 5), predicted at
// equal lengths and averaged over the instructions. The annotations must be
// those of the whole AlpacaEval set, in its order: the instruction
// difficulty is looked up by position.
func LengthControlled(anns []Annotation, data LCData) (LCResult, error) {
	res := LCResult{GLM: data.GLM(), Source: LCFitted}
	if len(anns) != len(data.Difficulty) {
		return res, fmt.Errorf("the length-controlled win rate needs an annotation for each of the %d instructions of AlpacaEval, in its order; there are %d", len(data.Difficulty), len(anns))
	}
	for i, a := range anns {
		if a.ID != "" && a.ID != strconv.Itoa(i) {
			return res, fmt.Errorf("annotation %d has id %q: the annotations are not in AlpacaEval's order", i, a.ID)
		}
	}
	if sameGenerator(anns) {
		// The baseline against itself: 50% by construction, as AlpacaEval says.
		res.WinRate = 50
		return res, nil
	}
	if w, ok := data.Published[anns[0].Generator2]; ok {
		return publishedLC(anns, data, w)
	}
	rows := modelRows(anns, data.Difficulty)
	train := rows.subset(func(i int) bool { return !math.IsNaN(rows.Y[i]) })
	if len(train.X) == 0 {
		return res, errors.New("no annotation has a preference")
	}
	train = concatRows(data.Gamed, train)
	beta, c, _ := fitL1LogisticCV(train, defaultCs(), 5)
	copy(res.Weights[:], beta)
	res.C = c
	preds := make([]float64, len(rows.X))
	for i, x := range rows.X {
		preds[i] = sigmoid(beta[1]*x[1] + beta[2]*x[2]) // at std_delta_len = 0
	}
	res.WinRate = pandasMean(preds) * 100
	res.StandardError = pandasSem(preds) * 100
	return res, nil
}

// publishedLC is AlpacaEval's LC of a model from its published weights w:
// the mean over the instructions of the predicted preference at equal
// lengths, with the weights taken relative to the baseline's, as
// AlpacaEval's predict_winrate does (the baseline's own weights are 0).
func publishedLC(anns []Annotation, data LCData, w [3]float64) (LCResult, error) {
	res := LCResult{GLM: GLMLengthControlled, Source: LCPublishedWeights}
	base, ok := data.Published[anns[0].Generator1]
	if !ok {
		return res, fmt.Errorf("the published weights name %s but not the baseline, %s", anns[0].Generator2, anns[0].Generator1)
	}
	for _, a := range anns {
		if a.Generator2 != anns[0].Generator2 {
			return res, fmt.Errorf("the annotations are of several models (%s, %s): the LC is one model's", anns[0].Generator2, a.Generator2)
		}
	}
	for k := range w {
		res.Weights[k] = w[k] - base[k]
	}
	preds := make([]float64, len(data.Difficulty))
	for i, d := range data.Difficulty {
		preds[i] = sigmoid(res.Weights[2] + res.Weights[1]*d)
	}
	res.WinRate = pandasMean(preds) * 100
	res.StandardError = pandasSem(preds) * 100
	return res, nil
}

// sameGenerator reports whether every annotation compares a generator with
// itself.
func sameGenerator(anns []Annotation) bool {
	for _, a := range anns {
		if a.Generator1 != a.Generator2 || a.Generator1 == "" {
			return false
		}
	}
	return len(anns) > 0
}

// modelRows are the GLM's rows for the model's annotations; Y is NaN where
// there is no preference.
func modelRows(anns []Annotation, difficulty []float64) weightedRows {
	deltas := make([]float64, len(anns))
	for i, a := range anns {
		deltas[i] = float64(utf8.RuneCountInString(a.Output1) - utf8.RuneCountInString(a.Output2))
	}
	sd := sampleStd(deltas)
	var rows weightedRows
	for i, a := range anns {
		std := 0.0
		if sd > 0 {
			std = deltas[i] / sd
		}
		y := math.NaN()
		if p, ok := a.preferenceValue(); ok {
			y = p - 1
		}
		rows.X = append(rows.X, []float64{math.Tanh(std), difficulty[i], 1})
		rows.Y = append(rows.Y, y)
		rows.W = append(rows.W, 1)
	}
	return rows
}

func concatRows(a, b weightedRows) weightedRows {
	return weightedRows{X: slices.Concat(a.X, b.X), Y: slices.Concat(a.Y, b.Y), W: slices.Concat(a.W, b.W)}
}

// sampleStd is the standard deviation with n-1 in the denominator; 0 for
// fewer than two values.
func sampleStd(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	m := mean(xs)
	ss := 0.0
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return math.Sqrt(ss / float64(len(xs)-1))
}

// LengthAdjustedEstimate is tpo's length-adjusted win rate, in percent:
// AlpacaEval's GLM without its instruction-difficulty term (the one it calls
// length_controlled_minimal), fitted to the annotations alone and predicted
// at equal lengths. It is an estimate, not AlpacaEval's LC: without the
// difficulty term it is only as good as the annotations are many.
func LengthAdjustedEstimate(anns []Annotation) float64 {
	rows := modelRows(anns, make([]float64, len(anns)))
	train := rows.subset(func(i int) bool { return !math.IsNaN(rows.Y[i]) })
	if len(train.X) == 0 {
		return 0
	}
	for i, x := range train.X {
		train.X[i] = []float64{x[0], x[2]} // tanh(std_delta_len), the constant
	}
	beta, _, _ := fitL1LogisticCV(train, defaultCs(), 5)
	return 100 * sigmoid(beta[1])
}

// ReadLCData reads AlpacaEval's published CSV files for the
// length-controlled win rate, recognized by their columns:
// instruction_difficulty.csv (index, instruction_difficulty), df_gamed.csv
// (preference, index, std_delta_len, instruction_difficulty,
// not_gamed_baseline, and others) and the weights of its leaderboard's
// models, baseline_gpt4_1106_preview.csv (the model, then
// np.tanh(std_delta_len), instruction_difficulty,
// not_gamed_baseline.astype(float), as patsy names the GLM's terms). Given df_gamed.csv, the difficulties
// come from it, as in AlpacaEval. name is each reader's file name, for
// errors.
func ReadLCData(files map[string]io.Reader) (LCData, error) {
	var d LCData
	var difficulty map[int]float64
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		t, err := readCSV(files[name], name)
		if err != nil {
			return d, err
		}
		if t.has(publishedNotGamed) {
			if d.Published, err = t.publishedWeights(); err != nil {
				return d, err
			}
			continue
		}
		if t.has("std_delta_len") || t.has("not_gamed_baseline") {
			rows, diff, err := t.gamedRows()
			if err != nil {
				return d, err
			}
			d.Gamed, difficulty = rows, diff
			continue
		}
		if d.Gamed.X != nil {
			continue // df_gamed.csv's difficulties win
		}
		if difficulty, err = t.difficulties(); err != nil {
			return d, err
		}
	}
	if difficulty == nil {
		return d, errors.New("no instruction difficulties: give instruction_difficulty.csv or df_gamed.csv")
	}
	dense, err := denseIndex(difficulty)
	d.Difficulty = dense
	return d, err
}

// denseIndex turns difficulties by index into a slice; the indices must be
// 0 to n-1.
func denseIndex(m map[int]float64) ([]float64, error) {
	out := make([]float64, len(m))
	for i, v := range m {
		if i < 0 || i >= len(m) {
			return nil, fmt.Errorf("instruction difficulties: index %d out of 0..%d (an index is missing)", i, len(m)-1)
		}
		out[i] = v
	}
	return out, nil
}

// csvTable is a CSV file's header and rows.
type csvTable struct {
	name   string
	header map[string]int
	rows   [][]string
}

func readCSV(r io.Reader, name string) (*csvTable, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: empty file", name)
	}
	t := &csvTable{name: name, header: map[string]int{}, rows: recs[1:]}
	for i, h := range recs[0] {
		t.header[strings.TrimPrefix(strings.TrimSpace(h), "\ufeff")] = i
	}
	// pandas writes its index as a first column with no name.
	if _, ok := t.header["index"]; !ok {
		if i, ok := t.header[""]; ok {
			t.header["index"] = i
		}
	}
	return t, nil
}

func (t *csvTable) has(col string) bool { _, ok := t.header[col]; return ok }

// float reads column col of row i (0-based, after the header) as a number;
// empty cells and NaN give NaN.
func (t *csvTable) float(i int, col string) (float64, error) {
	j, ok := t.header[col]
	if !ok {
		return 0, fmt.Errorf("%s: no column %q (columns: %s)", t.name, col, t.columns())
	}
	row := t.rows[i]
	if j >= len(row) {
		return 0, fmt.Errorf("%s:%d: column %q: missing", t.name, i+2, col)
	}
	s := strings.TrimSpace(row[j])
	switch strings.ToLower(s) {
	case "", "nan":
		return math.NaN(), nil
	case "true":
		return 1, nil
	case "false":
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%s:%d: column %q: want a number, got %q", t.name, i+2, col, s)
	}
	return v, nil
}

func (t *csvTable) columns() string {
	cols := make([]string, 0, len(t.header))
	for c := range t.header {
		cols = append(cols, strconv.Quote(c))
	}
	slices.Sort(cols)
	return strings.Join(cols, ", ")
}

// index reads the instruction index of row i.
func (t *csvTable) index(i int) (int, error) {
	v, err := t.float(i, "index")
	if err != nil {
		return 0, err
	}
	if v != math.Trunc(v) || v < 0 || math.IsNaN(v) {
		return 0, fmt.Errorf("%s:%d: column \"index\": want an instruction index, got %v", t.name, i+2, v)
	}
	return int(v), nil
}

// require fails unless the table has every column and a row.
func (t *csvTable) require(cols ...string) error {
	for _, c := range cols {
		if !t.has(c) {
			return fmt.Errorf("%s: no column %q (columns: %s)", t.name, c, t.columns())
		}
	}
	if len(t.rows) == 0 {
		return fmt.Errorf("%s: no rows", t.name)
	}
	return nil
}

// difficulties reads instruction_difficulty.csv.
func (t *csvTable) difficulties() (map[int]float64, error) {
	if err := t.require("index", "instruction_difficulty"); err != nil {
		return nil, err
	}
	m := map[int]float64{}
	for i := range t.rows {
		idx, err := t.index(i)
		if err != nil {
			return nil, err
		}
		v, err := t.float(i, "instruction_difficulty")
		if err != nil {
			return nil, err
		}
		if math.IsNaN(v) {
			return nil, fmt.Errorf("%s:%d: column \"instruction_difficulty\": empty", t.name, i+2)
		}
		m[idx] = v
	}
	return m, nil
}

// gamedRows reads df_gamed.csv: the training rows of the gamed baselines
// and the difficulty of each instruction (of its first row, as AlpacaEval
// takes it).
func (t *csvTable) gamedRows() (weightedRows, map[int]float64, error) {
	var rows weightedRows
	if err := t.require("index", "std_delta_len", "instruction_difficulty", "not_gamed_baseline", "preference"); err != nil {
		return rows, nil, err
	}
	diff := map[int]float64{}
	for i := range t.rows {
		var v [4]float64
		for k, col := range []string{"std_delta_len", "instruction_difficulty", "not_gamed_baseline", "preference"} {
			x, err := t.float(i, col)
			if err != nil {
				return rows, nil, err
			}
			v[k] = x
		}
		idx, err := t.index(i)
		if err != nil {
			return rows, nil, err
		}
		if math.IsNaN(v[1]) {
			return rows, nil, fmt.Errorf("%s:%d: column \"instruction_difficulty\": empty", t.name, i+2)
		}
		if _, seen := diff[idx]; !seen {
			diff[idx] = v[1]
		}
		pref := v[3]
		if math.IsNaN(pref) || math.IsNaN(v[0]) || math.IsNaN(v[1]) || math.IsNaN(v[2]) {
			continue // not a training row, as the formula's missing values drop it
		}
		if pref < 0 || pref > 1 {
			return rows, nil, fmt.Errorf("%s:%d: column \"preference\": %v is outside [0, 1], the scale of df_gamed.csv", t.name, i+2, pref)
		}
		w := 1.0
		if v[2] == 0 {
			w = gamedWeight
		}
		rows.X = append(rows.X, []float64{math.Tanh(v[0]), v[1], v[2]})
		rows.Y = append(rows.Y, pref)
		rows.W = append(rows.W, w)
	}
	return rows, diff, nil
}

// The columns of AlpacaEval's published weights, as patsy names the GLM's
// terms.
const (
	publishedLength    = "np.tanh(std_delta_len)"
	publishedNotGamed  = "not_gamed_baseline.astype(float)"
	publishedDifficult = "instruction_difficulty"
)

// publishedWeights reads baseline_gpt4_1106_preview.csv: each model's
// weights, the model named in the first column (pandas' index).
func (t *csvTable) publishedWeights() (map[string][3]float64, error) {
	if err := t.require(publishedLength, publishedDifficult, publishedNotGamed); err != nil {
		return nil, err
	}
	m := map[string][3]float64{}
	for i, row := range t.rows {
		if len(row) == 0 || strings.TrimSpace(row[0]) == "" {
			return nil, fmt.Errorf("%s:%d: no model name in the first column", t.name, i+2)
		}
		var w [3]float64
		for k, col := range []string{publishedLength, publishedDifficult, publishedNotGamed} {
			v, err := t.float(i, col)
			if err != nil {
				return nil, err
			}
			if math.IsNaN(v) {
				return nil, fmt.Errorf("%s:%d: column %q: empty", t.name, i+2, col)
			}
			w[k] = v
		}
		m[strings.TrimSpace(row[0])] = w
	}
	return m, nil
}
