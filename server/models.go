package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// DefaultPresets are the presets /v1/models lists for each model when
// Options.Presets is nil.
var DefaultPresets = []string{"tpo", ModeOff}

// preset is the settings a model name of the form PRESET/MODEL asks for:
// a mode (tpo, revision, bon or off), and optionally the width (-nN) and
// the depth (-dD), as in tpo-d2-n5/llama-3.1-70b.
type preset struct {
	Name  string // as written: "tpo-d2-n5"
	Mode  string
	Width *int
	Depth *int
}

// presetModes are the modes a preset may name.
var presetModes = []string{"tpo", "revision", "bon", ModeOff}

// splitPreset splits a request's model into its preset and the upstream
// model. A model whose part before the first "/" is not a preset's name
// (meta-llama/Llama-3.1-8B) is an upstream name as it is: ok is false. A
// name that is a preset's but asks for what the preset cannot do
// (bon-d2, off-n3, tpo-n0) is an error naming it.
func splitPreset(model string) (pr preset, upstream string, ok bool, err error) {
	name, rest, found := strings.Cut(model, "/")
	if !found {
		return preset{}, model, false, nil
	}
	pr, ok, err = parsePreset(name)
	if !ok || err != nil {
		return preset{}, model, false, err
	}
	if rest == "" {
		return preset{}, model, false, fmt.Errorf("model %q names the preset %s but no model after it (want %s/MODEL)", model, name, name)
	}
	return pr, rest, true, nil
}

// parsePreset reads a preset's name. ok is false for a name that is not a
// preset's (an upstream name); err is set for a preset's name that asks
// for what the preset cannot do.
func parsePreset(name string) (pr preset, ok bool, err error) {
	parts := strings.Split(name, "-")
	pr.Name, pr.Mode = name, parts[0]
	known := false
	for _, m := range presetModes {
		known = known || m == pr.Mode
	}
	if !known {
		return preset{}, false, nil
	}
	for _, p := range parts[1:] {
		var dst **int
		switch {
		case len(p) < 2:
			return preset{}, false, nil
		case p[0] == 'd':
			dst = &pr.Depth
		case p[0] == 'n':
			dst = &pr.Width
		default:
			return preset{}, false, nil
		}
		v, err := strconv.Atoi(p[1:])
		if err != nil || p[1] == '+' || p[1] == '-' {
			return preset{}, false, nil
		}
		if *dst != nil {
			return preset{}, true, fmt.Errorf("preset %q sets %c twice", name, p[0])
		}
		*dst = &v
	}
	switch {
	case pr.Mode == ModeOff && (pr.Width != nil || pr.Depth != nil):
		return preset{}, true, fmt.Errorf("preset %q: off passes requests through and takes no -d or -n", name)
	case pr.Mode == "bon" && pr.Depth != nil:
		return preset{}, true, fmt.Errorf("preset %q: bon (best of N) has no depth; drop -d%d", name, *pr.Depth)
	}
	return pr, true, nil
}

// overrides returns the preset's settings as a "tpo" object.
func (pr preset) overrides() Overrides {
	return Overrides{Mode: pr.Mode, Width: pr.Width, Depth: pr.Depth}
}

// under returns ov over the preset's settings: what the request's "tpo"
// object sets wins.
func (pr preset) under(ov Overrides) Overrides {
	base := pr.overrides()
	if ov.Mode == "" {
		ov.Mode = base.Mode
	}
	if ov.Width == nil {
		ov.Width = base.Width
	}
	if ov.Depth == nil {
		ov.Depth = base.Depth
	}
	return ov
}

// ParsePresets checks preset names, as given to --preset.
func ParsePresets(names []string) error {
	for _, n := range names {
		if _, ok, err := parsePreset(n); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("unknown preset %q: want tpo, revision, bon or off, optionally followed by -dD and -nN (tpo-d2-n5, bon-n8)", n)
			}
			return err
		}
	}
	return nil
}

// handleModels lists the policy server's models, then, for each, the
// configured presets: tpo/llama, off/llama, ...
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r.Context())
	defer cancel()
	list, err := s.up.Models(ctx)
	if err == nil {
		list, err = withPresets(list, s.opts.Presets)
	}
	if err != nil {
		s.log.Warn("listing the policy server's models failed", "err", err)
		writeError(w, upstreamError(err, errors.Is(ctx.Err(), context.DeadlineExceeded)))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(list, '\n'))
}

// withPresets adds to an OpenAI model list an entry PRESET/MODEL per
// preset and model, after the models as the upstream listed them.
func withPresets(list json.RawMessage, presets []string) (json.RawMessage, error) {
	var l struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		return nil, fmt.Errorf("the policy server's model list: %w", err)
	}
	type entry struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := l.Data
	for _, p := range presets {
		for _, raw := range l.Data {
			var m entry
			if err := json.Unmarshal(raw, &m); err != nil || m.ID == "" {
				continue
			}
			b, err := json.Marshal(entry{ID: p + "/" + m.ID, Object: "model", Created: m.Created, OwnedBy: "tpo"})
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	if out == nil {
		out = []json.RawMessage{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Object string            `json:"object"`
		Data   []json.RawMessage `json:"data"`
	}{"list", out}); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
