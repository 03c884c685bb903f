package eval

import (
	"cmp"
	"slices"
	"strconv"
)

// MathItem is one MATH-500 problem. The JSON field names match the rows of
// the shared math500.jsonl file, so ReadJSONL[MathItem] reads it directly.
type MathItem struct {
	ID      string `json:"id"`
	Problem string `json:"prompt"`
	Answer  string `json:"answer"`
	Subject string `json:"subject"`
	Level   int    `json:"level"`
}

// MathResult is the grade of one item.
type MathResult struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Level   int    `json:"level"`
	// Extracted is the answer found in the response ("" if none).
	Extracted string `json:"extracted"`
	// Answer is the reference answer.
	Answer string `json:"answer"`
	// ExtractedOK reports whether an answer was found in the response;
	// Source says how (see FindAnswer).
	ExtractedOK bool         `json:"extracted_ok"`
	Source      AnswerSource `json:"source,omitempty"`
	// Responded reports whether there was a response at all.
	Responded bool `json:"responded"`
	Correct   bool `json:"correct"`
}

// Tally counts correct items in a group.
type Tally struct {
	Total    int     `json:"total"`
	Correct  int     `json:"correct"`
	Accuracy float64 `json:"accuracy"` // Correct / Total; 0 when Total is 0
}

func (t *Tally) add(correct bool) {
	t.Total++
	if correct {
		t.Correct++
	}
	t.Accuracy = float64(t.Correct) / float64(t.Total)
}

// GroupTally is the tally of one level or subject.
type GroupTally struct {
	Group string `json:"group"`
	Tally
}

// MathReport is the result of grading MATH responses. Accuracy is over all
// items: an item without a response or without an extractable answer counts
// as incorrect.
type MathReport struct {
	Tally
	// Responded counts items that had a response, Extracted those whose
	// response had an extractable answer.
	Responded int `json:"responded"`
	Extracted int `json:"extracted"`
	// FromLastMath counts the answers found only by the fall-back to the
	// last math expression of the response (see FindAnswer).
	FromLastMath int `json:"from_last_math"`
	// ByLevel and BySubject are sorted by level and by subject name.
	ByLevel   []GroupTally `json:"by_level"`
	BySubject []GroupTally `json:"by_subject"`
	// Items holds one result per item, in input order.
	Items []MathResult `json:"items"`
	// Unextracted lists the IDs of items that had a response with no
	// extractable answer; Missing those with no response.
	Unextracted []string `json:"unextracted"`
	Missing     []string `json:"missing"`
}

// Grade checks responses (by item ID) against the items' reference answers:
// the answer is extracted with ExtractAnswer and compared with
// EquivalentFor, so problems that ask for all solutions accept any order.
func Grade(items []MathItem, responses map[string]string) MathReport {
	rep := MathReport{Unextracted: []string{}, Missing: []string{}, Items: make([]MathResult, 0, len(items))}
	levels := map[int]*Tally{}
	subjects := map[string]*Tally{}
	for _, it := range items {
		res := MathResult{ID: it.ID, Subject: it.Subject, Level: it.Level, Answer: it.Answer}
		resp, ok := responses[it.ID]
		if ok {
			res.Responded = true
			rep.Responded++
			res.Extracted, res.Source = FindAnswer(resp)
			res.ExtractedOK = res.Source != NoAnswer
			if res.ExtractedOK {
				rep.Extracted++
				if res.Source == FromLastMath {
					rep.FromLastMath++
				}
				res.Correct = EquivalentFor(it.Problem, res.Extracted, it.Answer)
			} else {
				rep.Unextracted = append(rep.Unextracted, it.ID)
			}
		} else {
			rep.Missing = append(rep.Missing, it.ID)
		}
		rep.add(res.Correct)
		if levels[it.Level] == nil {
			levels[it.Level] = &Tally{}
		}
		levels[it.Level].add(res.Correct)
		if subjects[it.Subject] == nil {
			subjects[it.Subject] = &Tally{}
		}
		subjects[it.Subject].add(res.Correct)
		rep.Items = append(rep.Items, res)
	}
	lv := make([]int, 0, len(levels))
	for l := range levels {
		lv = append(lv, l)
	}
	slices.Sort(lv)
	rep.ByLevel = make([]GroupTally, 0, len(lv))
	for _, l := range lv {
		rep.ByLevel = append(rep.ByLevel, GroupTally{Group: levelName(l), Tally: *levels[l]})
	}
	rep.BySubject = make([]GroupTally, 0, len(subjects))
	for s, t := range subjects {
		rep.BySubject = append(rep.BySubject, GroupTally{Group: s, Tally: *t})
	}
	slices.SortFunc(rep.BySubject, func(a, b GroupTally) int { return cmp.Compare(a.Group, b.Group) })
	return rep
}

func levelName(l int) string { return "Level " + strconv.Itoa(l) }
