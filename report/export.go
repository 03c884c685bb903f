package report

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tpoproject/tpo"
)

// Format is an export format.
type Format string

// The export formats.
const (
	// FormatAlpacaEval is AlpacaEval's model_outputs.json: a JSON array of
	// {instruction, output, generator, dataset}.
	FormatAlpacaEval Format = "alpacaeval"
	// FormatArenaHard is the answer file of Arena-Hard-Auto (since v2.0,
	// for every benchmark version it ships): one JSON object per line with
	// uid, ans_id, model, messages (the conversation, then the assistant
	// turn as {"answer": text}) and tstamp.
	FormatArenaHard Format = "arenahard"
	// FormatArenaHardV01 is the answer file of Arena-Hard-Auto releases
	// before v2.0: question_id, answer_id, model_id, choices
	// [{index, turns: [{content}]}] and tstamp.
	FormatArenaHardV01 Format = "arenahard-v0.1"
	// FormatJSONL is one {id, prompt, response} object per line.
	FormatJSONL Format = "jsonl"
)

// ParseFormat returns the export format named s.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatAlpacaEval, FormatArenaHard, FormatArenaHardV01, FormatJSONL:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (want alpacaeval, arenahard, arenahard-v0.1 or jsonl)", s)
}

// Answer is one item's answer to export.
type Answer struct {
	ID     string
	Prompt string
	// Messages is the conversation answered, when known; Arena-Hard answers
	// repeat it. Without it the conversation is the single user Prompt.
	Messages []tpo.Message
	Response string
}

// ExportOptions describe the answers being exported.
type ExportOptions struct {
	// Generator names the model (or method) that wrote the answers.
	Generator string
	// Dataset, if set, returns the AlpacaEval subset of an item by id; ""
	// (or a nil Dataset) gives "tpo".
	Dataset func(id string) string
	// Time is the tstamp of Arena-Hard answers.
	Time time.Time
}

// Exporter writes answers in one format, one at a time. Call Close to
// finish the output.
type Exporter struct {
	w      *bufio.Writer
	format Format
	opts   ExportOptions
	n      int
}

// NewExporter returns an exporter writing to w.
func NewExporter(w io.Writer, f Format, opts ExportOptions) (*Exporter, error) {
	if _, err := ParseFormat(string(f)); err != nil {
		return nil, err
	}
	return &Exporter{w: bufio.NewWriter(w), format: f, opts: opts}, nil
}

type alpacaOutput struct {
	Instruction string `json:"instruction"`
	Output      string `json:"output"`
	Generator   string `json:"generator"`
	Dataset     string `json:"dataset"`
}

type arenaMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"`
}

type arenaAnswer struct {
	UID      string         `json:"uid"`
	AnsID    string         `json:"ans_id"`
	Model    string         `json:"model"`
	Messages []arenaMessage `json:"messages"`
	Tstamp   float64        `json:"tstamp"`
}

type arenaTurn struct {
	Content string `json:"content"`
}

type arenaChoice struct {
	Index int         `json:"index"`
	Turns []arenaTurn `json:"turns"`
}

type arenaAnswerV01 struct {
	QuestionID string        `json:"question_id"`
	AnswerID   string        `json:"answer_id"`
	ModelID    string        `json:"model_id"`
	Choices    []arenaChoice `json:"choices"`
	Tstamp     float64       `json:"tstamp"`
}

type plainAnswer struct {
	ID       string `json:"id"`
	Prompt   string `json:"prompt"`
	Response string `json:"response"`
}

// answerID is a stable id of an answer: the same model, item and text
// always get the same id, so exports are reproducible.
func answerID(model, id, text string) string {
	h := sha256.New()
	for _, s := range []string{model, id, text} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:22]
}

// marshal encodes v without escaping <, > and & (answers are full of them).
func marshal(v any, indent bool) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("  ", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// Write writes one answer.
func (e *Exporter) Write(a Answer) error {
	var (
		v      any
		indent bool
	)
	tstamp := float64(e.opts.Time.UnixMilli()) / 1000
	switch e.format {
	case FormatAlpacaEval:
		ds := ""
		if e.opts.Dataset != nil {
			ds = e.opts.Dataset(a.ID)
		}
		if ds == "" {
			ds = "tpo"
		}
		v, indent = alpacaOutput{Instruction: a.Prompt, Output: a.Response, Generator: e.opts.Generator, Dataset: ds}, true
	case FormatArenaHard:
		var msgs []arenaMessage
		for _, m := range a.Messages {
			msgs = append(msgs, arenaMessage{Role: m.Role, Content: m.Content})
		}
		if len(msgs) == 0 {
			msgs = []arenaMessage{{Role: tpo.RoleUser, Content: a.Prompt}}
		}
		msgs = append(msgs, arenaMessage{Role: tpo.RoleAssistant, Content: map[string]string{"answer": a.Response}})
		v = arenaAnswer{UID: a.ID, AnsID: answerID(e.opts.Generator, a.ID, a.Response), Model: e.opts.Generator,
			Messages: msgs, Tstamp: tstamp}
	case FormatArenaHardV01:
		v = arenaAnswerV01{QuestionID: a.ID, AnswerID: answerID(e.opts.Generator, a.ID, a.Response),
			ModelID: e.opts.Generator, Tstamp: tstamp,
			Choices: []arenaChoice{{Index: 0, Turns: []arenaTurn{{Content: a.Response}}}}}
	default:
		v = plainAnswer{ID: a.ID, Prompt: a.Prompt, Response: a.Response}
	}
	b, err := marshal(v, indent)
	if err != nil {
		return fmt.Errorf("export %q: %w", a.ID, err)
	}
	if e.format == FormatAlpacaEval {
		sep := ",\n  "
		if e.n == 0 {
			sep = "[\n  "
		}
		b = append([]byte(sep), b...)
	} else {
		b = append(b, '\n')
	}
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("export %q: %w", a.ID, err)
	}
	e.n++
	return nil
}

// Close finishes the output (closing the JSON array of AlpacaEval) and
// flushes it. It does not close the underlying writer.
func (e *Exporter) Close() error {
	if e.format == FormatAlpacaEval {
		if e.n == 0 {
			e.w.WriteString("[]\n")
		} else {
			e.w.WriteString("\n]\n")
		}
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}
