package tpo_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
)

func TestDefaultTemplatesRender(t *testing.T) {
	ts := tpo.DefaultTemplates()
	d := tpo.PromptData{Query: "Q?", Chosen: "CHOSEN", Rejected: "REJ", Loss: "LOSS", Gradient: "GRAD", Tag: "c0ffee", Role: "a chosen response to a user query"}
	for _, name := range tpo.TemplateNames {
		out, err := ts.Render(name, d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out == "" {
			t.Errorf("%s rendered empty", name)
		}
	}
	// What each turn carries (see the README, "Prompt templates"): the loss turn quotes the
	// request and both responses between tagged lines, then the task.
	must := map[string][]string{
		"loss.tmpl":   {"Q?", "CHOSEN", "REJ", "BEGIN CHOSEN RESPONSE c0ffee", "END REJECTED RESPONSE c0ffee", "do not answer the request"},
		"update.tmpl": {"<improved_response>", "</improved_response>", "shown to the user exactly as it is", "Length is not a merit"},
	}
	for name, subs := range must {
		out, _ := ts.Render(name, d)
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("%s does not carry %q:\n%s", name, s, out)
			}
		}
	}
	// The task comes after the material, so the critic reads the response
	// as something to evaluate, not as a request to answer.
	loss, _ := ts.Render("loss.tmpl", d)
	if strings.Index(loss, "Step 1") < strings.Index(loss, "END REJECTED RESPONSE") {
		t.Errorf("the evaluation task comes before the quoted texts:\n%s", loss)
	}
	// Later turns quote nothing again: the chosen response is in the loss
	// turn only, and the critic's instructions stay in the loss turn.
	for _, name := range []string{"system.tmpl", "gradient.tmpl", "update.tmpl"} {
		out, _ := ts.Render(name, d)
		for _, s := range []string{"CHOSEN", "REJ", "LOSS", "GRAD", "Q?", "do not rewrite"} {
			if strings.Contains(out, s) {
				t.Errorf("%s carries %q:\n%s", name, s, out)
			}
		}
	}
	d.Revision, d.Rejected = true, ""
	if out, _ := ts.Render("loss.tmpl", d); strings.Contains(out, "REJECTED") || strings.Contains(out, "chosen") {
		t.Errorf("revision loss mentions a rejected or chosen response:\n%s", out)
	}
}

func TestLoadTemplates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("gradient.tmpl", "Now list the fixes for {{.Chosen}}")
	ts, err := tpo.LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ts.Render("gradient.tmpl", tpo.PromptData{Chosen: "X"}); got != "Now list the fixes for X" {
		t.Errorf("override: got %q", got)
	}
	if got, _ := ts.Render("update.tmpl", tpo.PromptData{}); !strings.Contains(got, "<improved_response>") {
		t.Errorf("non-overridden template lost: %q", got)
	}

	write("gradient.tmpl", "{{.Chosn}}")
	if _, err := tpo.LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "gradient.tmpl") || !strings.Contains(err.Error(), "Chosn") {
		t.Errorf("unknown field: got %v, want an error naming the file and field", err)
	}
	write("gradient.tmpl", "{{.Chosen}}")
	write("gradeint.tmpl", "typo")
	if _, err := tpo.LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "gradeint.tmpl") {
		t.Errorf("unknown file: got %v, want an error naming it", err)
	}
	os.Remove(filepath.Join(dir, "gradeint.tmpl"))
	write("loss_user.tmpl", "{{.Chosen}}")
	if _, err := tpo.LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "loss_user.tmpl") || !strings.Contains(err.Error(), "earlier layout") {
		t.Errorf("old file name: got %v, want an error saying the layout changed", err)
	}
	os.Remove(filepath.Join(dir, "loss_user.tmpl"))
	write("update.tmpl", "improve {{.Chosen}}")
	if _, err := tpo.LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "improved_response") {
		t.Errorf("update without tags: got %v, want an error", err)
	}
	if _, err := tpo.LoadTemplates(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: want an error")
	}
}
