package dataset

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/tpoproject/tpo"
)

// SourceOptions configure a Source.
type SourceOptions struct {
	// System, when set, is put as the system prompt before every
	// conversation that has none.
	System string
	// Limit, when positive, is the most records read.
	Limit int
	// Logger receives an info record for each bad record (default:
	// discard).
	Logger *slog.Logger
}

// Source adapts a Reader to tpo.Source, as `tpo run --data` reads a
// dataset: a bad record (invalid JSON, a missing prompt, a duplicate id)
// becomes a failed item, named by the record's own id unless it has none or
// that id is taken, else by its line ("line-17"), and the run goes on.
type Source struct {
	r    *Reader
	opts SourceOptions
	seen map[string]bool
	n    int // records read
}

// NewSource returns a Source over r.
func NewSource(r *Reader, opts SourceOptions) *Source {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{r: r, opts: opts, seen: map[string]bool{}}
}

// Next implements tpo.Source.
func (s *Source) Next() (tpo.Input, error) {
	if s.opts.Limit > 0 && s.n >= s.opts.Limit {
		return tpo.Input{}, io.EOF
	}
	s.n++
	rec, err := s.r.Next()
	if err != nil {
		var de *Error
		if !errors.As(err, &de) {
			return tpo.Input{}, err
		}
		s.opts.Logger.Info("bad input record", "err", err)
		id := rec.Item.ID
		if id == "" || s.seen[id] {
			id = fmt.Sprintf("line-%d", de.Line)
		}
		s.seen[id] = true
		return tpo.Input{Item: tpo.Item{ID: id}, Err: err}, nil
	}
	s.seen[rec.Item.ID] = true
	rec.Item.Messages = WithSystem(s.opts.System, rec.Item.Messages)
	return tpo.Input{Item: rec.Item}, nil
}

// WithSystem returns msgs with a system prompt first, unless system is
// empty or msgs already start with one.
func WithSystem(system string, msgs []tpo.Message) []tpo.Message {
	if system == "" || (len(msgs) > 0 && msgs[0].Role == tpo.RoleSystem) {
		return msgs
	}
	return append([]tpo.Message{{Role: tpo.RoleSystem, Content: system}}, msgs...)
}
