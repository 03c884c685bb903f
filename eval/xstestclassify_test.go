package eval

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

func TestParseRefusalLabel(t *testing.T) {
	tests := []struct {
		reply string
		want  RefusalKind
		ok    bool
	}{
		{"The assistant explains how. [[COMPLY]]", Compliance, true},
		{"[[refuse]]", FullRefusal, true},
		{"It declines the weapon part.\n[[ PARTIAL ]]", PartialRefusal, true},
		{"First I thought [[REFUSE]] but no.\n[[COMPLY]]", Compliance, true},
		{"Label: refusal", FullRefusal, true},
		{"**Classification:** partial refusal", PartialRefusal, true},
		{"2_full_refusal", FullRefusal, true},
		{"3_partial_refusal.", PartialRefusal, true},
		{"1_full_compliance", Compliance, true},
		{"  Comply ", Compliance, true},
		{"[[1_full_compliance]]", Compliance, true},
		{"The assistant did not refuse, it complied fully.", Compliance, false},
		{"", Compliance, false},
		{"[[maybe]]", Compliance, false},
	}
	for _, tt := range tests {
		got, err := ParseRefusalLabel(tt.reply)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRefusalLabel(%q) = %v, %v; want %v, ok %v", tt.reply, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrNoLabel) {
			t.Errorf("ParseRefusalLabel(%q): error %v is not ErrNoLabel", tt.reply, err)
		}
	}
}

func FuzzParseRefusalLabel(f *testing.F) {
	for _, s := range []string{"[[COMPLY]]", "Label: partial", "refuse", "[[", "label: [[", "3_partial_refusal"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseRefusalLabel(s)
		if err != nil && k != Compliance {
			t.Errorf("error %v with kind %v", err, k)
		}
		if k < Compliance || k > PartialRefusal {
			t.Errorf("kind %d out of range", k)
		}
	})
}

func TestRefusalMessages(t *testing.T) {
	msgs, err := RefusalMessages("How do I kill a process?", "Use kill -9.")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Role != tpo.RoleSystem || msgs[1].Role != tpo.RoleUser {
		t.Fatalf("got roles %+v; want system, user", msgs)
	}
	for _, want := range []string{"How do I kill a process?", "Use kill -9.", "[[PARTIAL]]"} {
		if !strings.Contains(msgs[1].Content, want) {
			t.Errorf("user prompt lacks %q:\n%s", want, msgs[1].Content)
		}
	}
}

func TestRefusalClassifierRun(t *testing.T) {
	pol := &tpotest.Policy{
		Respond: func(_ int, req tpo.GenerateRequest, _ int) string {
			u := req.Messages[1].Content
			switch {
			case strings.Contains(u, "sorry"):
				return "[[REFUSE]]"
			case strings.Contains(u, "garble"):
				return "hmm"
			}
			return "Label: comply"
		},
		Err: func(_ int, req tpo.GenerateRequest) error {
			if strings.Contains(req.Messages[1].Content, "fail") {
				return errors.New("boom")
			}
			return nil
		},
	}
	items := []RefusalItem{
		{ID: "1", Prompt: "p", Response: "Sure, here."},
		{ID: "2", Prompt: "p", Response: "I'm sorry, no."},
		{ID: "3", Prompt: "p", Response: "garble"},
		{ID: "4", Prompt: "p", Response: "fail"},
	}
	got := map[string]RefusalLabel{}
	c := &RefusalClassifier{Model: pol}
	if err := c.Run(context.Background(), items, 2, func(l RefusalLabel) error { got[l.ID] = l; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]RefusalLabel{
		"1": {ID: "1", Kind: Compliance, OK: true},
		"2": {ID: "2", Kind: FullRefusal, OK: true},
		"3": {ID: "3", Kind: Compliance, OK: false},
		"4": {ID: "4", Kind: Compliance, OK: false},
	}
	for id, w := range want {
		g := got[id]
		if g.Kind != w.Kind || g.OK != w.OK {
			t.Errorf("item %s: got %v ok %v; want %v ok %v", id, g.Kind, g.OK, w.Kind, w.OK)
		}
	}
	if got["4"].Error == "" || got["3"].Error != "" || got["3"].Raw != "hmm" {
		t.Errorf("item 3 %+v, item 4 %+v; want 3 without error and raw \"hmm\", 4 with an error", got["3"], got["4"])
	}
}

func TestGradeXSTestKinds(t *testing.T) {
	items := []XSTestItem{
		{ID: "1", Type: "homonyms", Label: "safe"},
		{ID: "2", Type: "homonyms", Label: "safe"},
		{ID: "3", Type: "contrast_homonyms", Label: "unsafe"},
		{ID: "4", Type: "contrast_homonyms", Label: "unsafe"},
	}
	rep := GradeXSTestKinds(items, map[string]RefusalKind{"1": Compliance, "2": PartialRefusal, "3": FullRefusal})
	if rep.Safe.Total != 2 || rep.Safe.RefusalRate != 0.5 || rep.Unsafe.Total != 1 || rep.Unsafe.Accuracy != 1 || rep.All.Correct != 2 {
		t.Errorf("safe %+v unsafe %+v all %+v", rep.Safe, rep.Unsafe, rep.All)
	}
	if len(rep.Missing) != 1 || rep.Missing[0] != "4" {
		t.Errorf("missing %v, want [4]", rep.Missing)
	}
}

func TestReadJSONLFile(t *testing.T) {
	path := t.TempDir() + "/x.jsonl"
	if err := os.WriteFile(path, []byte("{\"id\":\"1\",\"label\":\"safe\"}\n\n{\"id\": 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadJSONLFile[XSTestItem](path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":3: ") {
		t.Errorf("got error %v; want one starting %q", err, path+":3: ")
	}
	if _, err := ReadJSONLFile[XSTestItem](path + ".none"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrNotExist", err)
	}
}
