package tpo

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

//go:embed templates/*.tmpl
var defaultTemplateFS embed.FS

// TemplateNames lists the prompt template files, in the order they are used.
// A directory given to LoadTemplates may override any of them.
//
// Every template is executed with a PromptData value. The files are:
//
//	loss_system.tmpl           system message of the textual loss (tpo mode)
//	revision_loss_system.tmpl  system message of the textual loss (revision mode, and the
//	                           fallback when every candidate scored the same)
//	loss_user.tmpl             user message of the textual loss (both modes)
//	gradient_system.tmpl       system message of the textual gradient
//	gradient_user.tmpl         user message of the textual gradient
//	update_system.tmpl         system message of the update
//	update_user.tmpl           user message of the update; it must ask for the new text
//	                           between <improved_response> and </improved_response>
var TemplateNames = []string{
	"loss_system.tmpl",
	"revision_loss_system.tmpl",
	"loss_user.tmpl",
	"gradient_system.tmpl",
	"gradient_user.tmpl",
	"update_system.tmpl",
	"update_user.tmpl",
}

// PromptData is what prompt templates can use.
type PromptData struct {
	// Query is what is being answered: the last user turn for a single-turn
	// conversation, or the whole conversation rendered as a transcript.
	Query string
	// Chosen is the best response in the cache (truncated to the text budget).
	Chosen string
	// Rejected is the worst response in the cache (empty in revision mode).
	Rejected string
	// LossSystem is the system message the loss call was made with.
	LossSystem string
	// Loss is the critique (the textual loss).
	Loss string
	// Gradient is the instructions derived from the critique (the textual gradient).
	Gradient string
	// Role describes the text being improved: "a chosen response to a user
	// query" in tpo mode, "a model response to a user query" in revision mode.
	Role string
	// Revision is true in revision mode and for the equal-scores fallback.
	Revision bool
}

// Templates holds parsed prompt templates.
type Templates struct {
	t map[string]*template.Template
}

// DefaultTemplates returns the built-in prompt templates.
func DefaultTemplates() *Templates {
	t, err := parseTemplates(defaultTemplateFS, "templates", nil)
	if err != nil {
		panic(fmt.Sprintf("tpo: built-in templates: %v", err)) // a build defect, caught by tests
	}
	return t
}

// LoadTemplates returns the built-in templates with any file of the same name
// found in dir used instead. Files in dir that are not template names are an
// error, so that a misspelt file name does not go unnoticed.
func LoadTemplates(dir string) (*Templates, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	override := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if !isTemplateName(e.Name()) {
			return nil, fmt.Errorf("templates: %s: unknown template file (want one of %s)",
				filepath.Join(dir, e.Name()), strings.Join(TemplateNames, ", "))
		}
		override[e.Name()] = true
	}
	return parseTemplates(defaultTemplateFS, "templates", &overrides{dir: os.DirFS(dir), path: dir, names: override})
}

type overrides struct {
	dir   fs.FS
	path  string
	names map[string]bool
}

func isTemplateName(name string) bool {
	for _, n := range TemplateNames {
		if n == name {
			return true
		}
	}
	return false
}

func parseTemplates(base fs.FS, baseDir string, ov *overrides) (*Templates, error) {
	ts := &Templates{t: map[string]*template.Template{}}
	for _, name := range TemplateNames {
		var (
			src  []byte
			err  error
			path = baseDir + "/" + name
		)
		if ov != nil && ov.names[name] {
			src, err = fs.ReadFile(ov.dir, name)
			path = filepath.Join(ov.path, name)
		} else {
			src, err = fs.ReadFile(base, path)
		}
		if err != nil {
			return nil, fmt.Errorf("templates: %w", err)
		}
		t, err := template.New(name).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("templates: %s: %w", path, err)
		}
		// Execute once with sample data so that a reference to an unknown
		// field is reported now, with the file name, not mid-run.
		if err := t.Execute(&bytes.Buffer{}, PromptData{}); err != nil {
			return nil, fmt.Errorf("templates: %s: %w", path, err)
		}
		ts.t[name] = t
	}
	if ov != nil && ov.names["update_user.tmpl"] {
		var b bytes.Buffer
		_ = ts.t["update_user.tmpl"].Execute(&b, PromptData{})
		_ = ts.t["update_system.tmpl"].Execute(&b, PromptData{})
		if !strings.Contains(b.String(), "<improved_response>") {
			return nil, errors.New("templates: update_system.tmpl and update_user.tmpl never mention <improved_response>; the update's answers could not be parsed")
		}
	}
	return ts, nil
}

// Render executes the named template with d.
func (ts *Templates) Render(name string, d PromptData) (string, error) {
	t, ok := ts.t[name]
	if !ok {
		return "", fmt.Errorf("no template %q", name)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	return strings.TrimSpace(b.String()), nil
}
