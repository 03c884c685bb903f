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
// The three calls of a round (loss, gradient, update) are one growing
// conversation, so that each request starts with the whole of the one
// before it and a server's prefix cache (vLLM, SGLang) serves that part
// without recomputing it:
//
//	loss:     system, user(loss)
//	gradient: system, user(loss), assistant(critique), user(gradient)
//	update:   system, user(loss), assistant(critique), user(gradient), assistant(instructions), user(update)
//
// Every template is executed with a PromptData value. The files are:
//
//	system.tmpl    the system message of all three calls (no system message if it renders blank)
//	loss.tmpl      the request and the responses to evaluate, quoted, then the evaluation task
//	               (.Revision: one response and no rejected one)
//	gradient.tmpl  the task of turning the critique into instructions
//	update.tmpl    the task of writing the improved response; it must ask for the new text
//	               between <improved_response> and </improved_response>
var TemplateNames = []string{
	"system.tmpl",
	"loss.tmpl",
	"gradient.tmpl",
	"update.tmpl",
}

// replacedTemplates are the template files of earlier versions, which
// laid each call out as its own system and user message.
var replacedTemplates = map[string]bool{
	"loss_system.tmpl": true, "revision_loss_system.tmpl": true, "loss_user.tmpl": true,
	"gradient_system.tmpl": true, "gradient_user.tmpl": true,
	"update_system.tmpl": true, "update_user.tmpl": true,
}

// PromptData is what prompt templates can use.
type PromptData struct {
	// Query is what is being answered: the last user turn for a single-turn
	// conversation, or the whole conversation rendered as a transcript.
	Query string
	// Chosen is the best response in the cache (cut to the text budget).
	Chosen string
	// Rejected is the worst response in the cache (empty in revision mode).
	Rejected string
	// Loss is the critique (the textual loss) and Gradient the instructions
	// derived from it (the textual gradient), once known. The default
	// templates do not quote them: they are the model's own earlier turns.
	Loss     string
	Gradient string
	// Role describes the text being improved: "a chosen response to a user
	// query" in tpo mode, "a model response to a user query" in revision mode.
	Role string
	// Revision is true in revision mode and for the equal-scores fallback.
	Revision bool
	// Tag is a code that marks the lines around quoted texts. It is derived
	// from the texts of the round, so none of them can contain it by design,
	// and any occurrence of it in a quoted text is removed: a quoted text
	// cannot close its block early.
	Tag string
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
		if replacedTemplates[e.Name()] {
			return nil, fmt.Errorf("templates: %s: this file name is from an earlier layout of the prompts; "+
				"a round is now one conversation of %s (see tpo.TemplateNames): start again from the built-in ones",
				filepath.Join(dir, e.Name()), strings.Join(TemplateNames, ", "))
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
	if ov != nil && (ov.names["update.tmpl"] || ov.names["system.tmpl"]) {
		var b bytes.Buffer
		_ = ts.t["update.tmpl"].Execute(&b, PromptData{})
		_ = ts.t["system.tmpl"].Execute(&b, PromptData{})
		if !strings.Contains(b.String(), "<improved_response>") {
			return nil, errors.New("templates: neither update.tmpl nor system.tmpl mentions <improved_response>; the update's answers could not be parsed")
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
