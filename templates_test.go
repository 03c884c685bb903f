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
	d := tpo.PromptData{Query: "Q?", Chosen: "CHOSEN", Rejected: "REJ", Loss: "LOSS", Gradient: "GRAD", LossSystem: "LS", Role: "a chosen response to a user query"}
	for _, name := range tpo.TemplateNames {
		out, err := ts.Render(name, d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out == "" {
			t.Errorf("%s rendered empty", name)
		}
	}
	// What each call carries (see docs/tpo.md).
	must := map[string][]string{
		"loss_system.tmpl":          {"Q?", "REJ"},
		"revision_loss_system.tmpl": {"Q?"},
		"loss_user.tmpl":            {"CHOSEN"},
		"gradient_user.tmpl":        {"LS", "CHOSEN", "LOSS", "a chosen response to a user query"},
		"update_user.tmpl":          {"CHOSEN", "LS", "LOSS", "GRAD", "<improved_response>", "</improved_response>"},
		"update_system.tmpl":        {"<improved_response>"},
	}
	for name, subs := range must {
		out, _ := ts.Render(name, d)
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("%s does not carry %q:\n%s", name, s, out)
			}
		}
	}
	if out, _ := ts.Render("revision_loss_system.tmpl", d); strings.Contains(out, "REJ") {
		t.Errorf("revision loss shows the rejected response")
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
	write("loss_user.tmpl", "Critique this: {{.Chosen}}")
	ts, err := tpo.LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ts.Render("loss_user.tmpl", tpo.PromptData{Chosen: "X"}); got != "Critique this: X" {
		t.Errorf("override: got %q", got)
	}
	if got, _ := ts.Render("gradient_system.tmpl", tpo.PromptData{}); !strings.Contains(got, "feedback") {
		t.Errorf("non-overridden template lost: %q", got)
	}

	write("loss_user.tmpl", "{{.Chosn}}")
	if _, err := tpo.LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "loss_user.tmpl") || !strings.Contains(err.Error(), "Chosn") {
		t.Errorf("unknown field: got %v, want an error naming the file and field", err)
	}
	write("loss_user.tmpl", "{{.Chosen}}")
	write("lose_user.tmpl", "typo")
	if _, err := tpo.LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "lose_user.tmpl") {
		t.Errorf("unknown file: got %v, want an error naming it", err)
	}
	os.Remove(filepath.Join(dir, "lose_user.tmpl"))
	write("update_user.tmpl", "improve {{.Chosen}}")
	write("update_system.tmpl", "you improve")
	if _, err := tpo.LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "improved_response") {
		t.Errorf("update without tags: got %v, want an error", err)
	}
	if _, err := tpo.LoadTemplates(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: want an error")
	}
}
