package benchdata

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// The conversions read the upstream files and write tpo's JSON Lines: one
// object a line, its fields in a fixed order, written as Python's
// json.dumps(ensure_ascii=False) writes them (", " and ": " between
// items, non-ASCII text as it is), so that the output is byte for byte the
// file of ../shared/data.

// field is one field of an output object: a string or an int.
type field struct {
	key string
	val any
}

// lineWriter writes output objects, one a line.
type lineWriter struct{ b bytes.Buffer }

func (w *lineWriter) object(fields ...field) {
	w.b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			w.b.WriteString(", ")
		}
		writeString(&w.b, f.key)
		w.b.WriteString(": ")
		switch v := f.val.(type) {
		case string:
			writeString(&w.b, v)
		case int:
			w.b.WriteString(strconv.Itoa(v))
		default:
			panic(fmt.Sprintf("benchdata: field %q of type %T", f.key, v))
		}
	}
	w.b.WriteString("}\n")
}

// writeString writes s as a JSON string the way Python does with
// ensure_ascii=False: only the quote, the backslash and control characters
// are escaped.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// eachLine decodes every non-blank JSON line of data into a T; errors name
// the source and the line.
func eachLine[T any](data []byte, name string, fn func(i int, v T) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	line, i := 0, 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if err := fn(i, v); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		i++
	}
	return sc.Err()
}

func convertMath500(src [][]byte) ([]byte, error) {
	type row struct {
		Problem, Solution, Answer, Subject string
		Level                              int
		UniqueID                           string `json:"unique_id"`
	}
	var w lineWriter
	err := eachLine(src[0], "math500 original.jsonl", func(_ int, r row) error {
		w.object(field{"id", r.UniqueID}, field{"prompt", r.Problem}, field{"answer", r.Answer}, field{"subject", r.Subject},
			field{"level", r.Level}, field{"unique_id", r.UniqueID}, field{"solution", r.Solution})
		return nil
	})
	return w.b.Bytes(), err
}

// convertAlpaca converts AlpacaEval's model_outputs.json (a JSON array of
// {instruction, output, generator, dataset}, in the set's order) into
// {id, prompt, dataset} lines, the id being the position.
func convertAlpaca(src [][]byte) ([]byte, error) {
	var rows []struct{ Instruction, Dataset string }
	if err := json.Unmarshal(src[0], &rows); err != nil {
		return nil, fmt.Errorf("alpaca_eval model_outputs.json: %w", err)
	}
	var w lineWriter
	for i, r := range rows {
		w.object(field{"id", strconv.Itoa(i)}, field{"prompt", r.Instruction}, field{"dataset", r.Dataset})
	}
	return w.b.Bytes(), nil
}

// convertAlpacaBaseline converts AlpacaEval's model_outputs.json (a JSON
// array of {instruction, output, generator, dataset}, in the set's order)
// into {id, model, answer} lines, the id being the position.
func convertAlpacaBaseline(src [][]byte) ([]byte, error) {
	var rows []struct{ Instruction, Output, Generator string }
	if err := json.Unmarshal(src[0], &rows); err != nil {
		return nil, fmt.Errorf("alpaca_eval model_outputs.json: %w", err)
	}
	var w lineWriter
	for i, r := range rows {
		w.object(field{"id", strconv.Itoa(i)}, field{"model", r.Generator}, field{"answer", r.Output})
	}
	return w.b.Bytes(), nil
}

type arenaQuestion struct {
	UID, Category, Cluster, Prompt string
}

func convertArenaQuestions(src [][]byte) ([]byte, error) {
	var w lineWriter
	err := eachLine(src[0], "arena_hard_v0.1 original.jsonl", func(_ int, q arenaQuestion) error {
		w.object(field{"id", q.UID}, field{"prompt", q.Prompt}, field{"question_id", q.UID},
			field{"category", q.Category}, field{"cluster", q.Cluster})
		return nil
	})
	return w.b.Bytes(), err
}

// convertArenaBaseline writes the baseline's answers (Arena-Hard's
// model_answer file: {uid, model, messages}, the answer in the last
// message's content.answer) in the order of the questions.
func convertArenaBaseline(src [][]byte) ([]byte, error) {
	type answer struct {
		UID      string
		Model    string
		Messages []struct {
			Content json.RawMessage
		}
	}
	answers := map[string]answer{}
	err := eachLine(src[1], "arena_hard_v0.1 gpt-4-0314.jsonl", func(_ int, a answer) error {
		answers[a.UID] = a
		return nil
	})
	if err != nil {
		return nil, err
	}
	var w lineWriter
	err = eachLine(src[0], "arena_hard_v0.1 original.jsonl", func(_ int, q arenaQuestion) error {
		a, ok := answers[q.UID]
		if !ok || len(a.Messages) == 0 {
			return fmt.Errorf("question %s: no answer of the baseline", q.UID)
		}
		var content struct{ Answer string }
		if err := json.Unmarshal(a.Messages[len(a.Messages)-1].Content, &content); err != nil {
			return fmt.Errorf("question %s: the baseline's answer: %w", q.UID, err)
		}
		w.object(field{"question_id", q.UID}, field{"model", a.Model}, field{"answer", content.Answer})
		return nil
	})
	return w.b.Bytes(), err
}

func convertXSTest(src [][]byte) ([]byte, error) {
	r := csv.NewReader(bytes.NewReader(src[0]))
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("xstest original.csv: %w", err)
	}
	if len(recs) == 0 {
		return nil, errors.New("xstest original.csv: empty")
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	names := []string{"id", "prompt", "type", "label", "focus", "note"}
	for _, n := range names {
		if _, ok := col[n]; !ok {
			return nil, fmt.Errorf("xstest original.csv: no column %q", n)
		}
	}
	var w lineWriter
	for _, rec := range recs[1:] {
		fs := make([]field, len(names))
		for i, n := range names {
			fs[i] = field{n, rec[col[n]]}
		}
		w.object(fs...)
	}
	return w.b.Bytes(), nil
}

// hhPrompts is how many distinct prompts the HH-RLHF sample keeps.
const hhPrompts = 500

// convertHH takes the first hhPrompts distinct first-turn human prompts of
// HH-RLHF's helpful-base test file: the text between the first
// "\n\nHuman: " and the following "\n\nAssistant:" of each chosen
// conversation, trimmed.
func convertHH(src [][]byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(src[0]))
	if err != nil {
		return nil, fmt.Errorf("hh_rlhf original.jsonl.gz: %w", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("hh_rlhf original.jsonl.gz: %w", err)
	}
	var w lineWriter
	seen := map[string]bool{}
	errDone := errors.New("done")
	err = eachLine(data, "hh_rlhf test.jsonl", func(i int, r struct{ Chosen string }) error {
		p, ok := firstHumanTurn(r.Chosen)
		if !ok {
			return errors.New(`field "chosen": no "\n\nHuman: ... \n\nAssistant:" turn`)
		}
		if seen[p] {
			return nil
		}
		seen[p] = true
		w.object(field{"id", "hh-helpful-base-test-" + strconv.Itoa(i)}, field{"prompt", p}, field{"source_row", i},
			field{"human_turns_in_source", strings.Count(r.Chosen, "\n\nHuman:")})
		if len(seen) == hhPrompts {
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		err = nil
	}
	return w.b.Bytes(), err
}

func firstHumanTurn(conv string) (string, bool) {
	const human, assistant = "\n\nHuman: ", "\n\nAssistant:"
	i := strings.Index(conv, human)
	if i < 0 {
		return "", false
	}
	rest := conv[i+len(human):]
	j := strings.Index(rest, assistant)
	if j < 0 {
		return "", false
	}
	return strings.TrimFunc(rest[:j], pyIsSpace), true
}

// pyIsSpace is Python's str.isspace for one character, which str.strip
// trims: Unicode white space, and the separators U+001C to U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

func convertBeaverTails(src [][]byte) ([]byte, error) {
	var rows []struct {
		Prompt     string `json:"prompt"`
		Category   string `json:"category"`
		CategoryID int    `json:"category_id"`
	}
	if err := json.Unmarshal(src[0], &rows); err != nil {
		return nil, fmt.Errorf("beavertails original.json: %w", err)
	}
	var w lineWriter
	for i, r := range rows {
		w.object(field{"id", strconv.Itoa(i)}, field{"prompt", r.Prompt}, field{"category", r.Category}, field{"category_id", r.CategoryID})
	}
	return w.b.Bytes(), nil
}
