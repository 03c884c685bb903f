package eval

import (
	"reflect"
	"strings"
	"testing"
)

func TestGrade(t *testing.T) {
	items := []MathItem{
		{ID: "a", Problem: "Compute 1/2.", Answer: `\frac{1}{2}`, Subject: "Algebra", Level: 1},
		{ID: "b", Problem: "Find all solutions, separated by commas.", Answer: "1,-2", Subject: "Algebra", Level: 3},
		{ID: "c", Problem: "How long is it?", Answer: "5", Subject: "Geometry", Level: 3},
		{ID: "d", Problem: "What angle?", Answer: `90^\circ`, Subject: "Geometry", Level: 1},
		{ID: "e", Problem: "Which?", Answer: `\text{(C)}`, Subject: "Precalculus", Level: 5},
		{ID: "f", Problem: "Square 3.", Answer: "9", Subject: "Algebra", Level: 1},
	}
	responses := map[string]string{
		"a": `We get $\boxed{0.5}$.`,
		"b": `The roots are $\boxed{-2, 1}$.`,
		"c": `It is about five centimetres, I think.`,
		"d": `Final answer: 45 degrees`,
		"f": "Squaring, we get\n\\[ 3^2 = 9 \\]",
	}
	rep := Grade(items, responses)
	if rep.Total != 6 || rep.Correct != 3 || rep.Responded != 5 || rep.Extracted != 4 || rep.FromLastMath != 1 {
		t.Errorf("total, correct, responded, extracted, from last math = %d, %d, %d, %d, %d; want 6, 3, 5, 4, 1",
			rep.Total, rep.Correct, rep.Responded, rep.Extracted, rep.FromLastMath)
	}
	if rep.Accuracy != 0.5 {
		t.Errorf("accuracy = %v, want 0.5", rep.Accuracy)
	}
	if want := []string{"c"}; !reflect.DeepEqual(rep.Unextracted, want) {
		t.Errorf("unextracted = %v, want %v", rep.Unextracted, want)
	}
	if want := []string{"e"}; !reflect.DeepEqual(rep.Missing, want) {
		t.Errorf("missing = %v, want %v", rep.Missing, want)
	}
	wantLevels := []GroupTally{
		{"Level 1", Tally{Total: 3, Correct: 2, Accuracy: 2.0 / 3}},
		{"Level 3", Tally{Total: 2, Correct: 1, Accuracy: 0.5}},
		{"Level 5", Tally{Total: 1, Correct: 0, Accuracy: 0}},
	}
	if !reflect.DeepEqual(rep.ByLevel, wantLevels) {
		t.Errorf("by level = %+v, want %+v", rep.ByLevel, wantLevels)
	}
	wantSubjects := []GroupTally{
		{"Algebra", Tally{Total: 3, Correct: 3, Accuracy: 1}},
		{"Geometry", Tally{Total: 2, Correct: 0, Accuracy: 0}},
		{"Precalculus", Tally{Total: 1, Correct: 0, Accuracy: 0}},
	}
	if !reflect.DeepEqual(rep.BySubject, wantSubjects) {
		t.Errorf("by subject = %+v, want %+v", rep.BySubject, wantSubjects)
	}
	wantItems := []MathResult{
		{ID: "a", Subject: "Algebra", Level: 1, Extracted: "0.5", Answer: `\frac{1}{2}`, ExtractedOK: true, Source: FromBox, Responded: true, Correct: true},
		{ID: "b", Subject: "Algebra", Level: 3, Extracted: "-2, 1", Answer: "1,-2", ExtractedOK: true, Source: FromBox, Responded: true, Correct: true},
		{ID: "c", Subject: "Geometry", Level: 3, Answer: "5", Responded: true},
		{ID: "d", Subject: "Geometry", Level: 1, Extracted: "45 degrees", Answer: `90^\circ`, ExtractedOK: true, Source: FromMarker, Responded: true},
		{ID: "e", Subject: "Precalculus", Level: 5, Answer: `\text{(C)}`},
		{ID: "f", Subject: "Algebra", Level: 1, Extracted: "9", Answer: "9", ExtractedOK: true, Source: FromLastMath, Responded: true, Correct: true},
	}
	if !reflect.DeepEqual(rep.Items, wantItems) {
		t.Errorf("items =\n%+v\nwant\n%+v", rep.Items, wantItems)
	}
}

func TestGradeEmpty(t *testing.T) {
	rep := Grade(nil, nil)
	if rep.Total != 0 || rep.Accuracy != 0 || len(rep.Items) != 0 || rep.Missing == nil || rep.Unextracted == nil {
		t.Errorf("Grade(nil, nil) = %+v", rep)
	}
}

func TestReadJSONL(t *testing.T) {
	in := `{"id": "x", "prompt": "p", "answer": "3", "subject": "Algebra", "level": 2}

{"id": "y", "prompt": "q", "answer": "4", "subject": "Geometry", "level": 5}
`
	got, err := ReadJSONL[MathItem](strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []MathItem{{"x", "p", "3", "Algebra", 2}, {"y", "q", "4", "Geometry", 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	_, err = ReadJSONL[MathItem](strings.NewReader("{\"id\": \"x\"}\n{bad\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error = %v, want one naming line 2", err)
	}
}

func FuzzReadJSONL(f *testing.F) {
	f.Add(`{"id": "x", "level": 2}` + "\n" + `{"id": "y"}`)
	f.Add("\n\n")
	f.Add(`{"level": "two"}`)
	f.Fuzz(func(t *testing.T, in string) {
		items, err := ReadJSONL[MathItem](strings.NewReader(in))
		if err != nil && items != nil {
			t.Errorf("items %v returned with error %v", items, err)
		}
	})
}
