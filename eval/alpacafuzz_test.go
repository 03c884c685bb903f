package eval

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

func FuzzReadAnnotations(f *testing.F) {
	for _, s := range []string{
		`[{"instruction": "a", "output_1": "x", "output_2": "y", "preference": 1.5}]`,
		"{\"instruction\": \"a\", \"preference\": null}\n{\"instruction\": \"b\", \"preference\": 2}\n",
		`[{"instruction": "a", "preference": "x"}]`, `[`,
		`[{"instruction": "a", "raw_completion": {"logprobs": {"content": [{"token": "m"}]}}, "generator_2": 5, "preference": 1.2}]`,
		"{\"instruction\": \"a\", \"raw_completion\": null, \"dataset\": [1], \"time_per_example\": null}\n", `[]`, "\ufeff[{\"instruction\": \"é\"}]", `{"instruction": 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		anns, err := ReadAnnotations(data, "fuzz.json")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.json:") {
				t.Errorf("error %q does not name the file and line", err)
			}
			return
		}
		m := AlpacaEvalMetrics(anns)
		if math.IsNaN(m.WinRate) || m.WinRate < 0 || m.WinRate > 100 || m.NTotal+m.NotPreferences != len(anns) {
			t.Errorf("metrics %+v of %d annotations", m, len(anns))
		}
		// What is read writes back as JSON Lines and reads the same.
		var b strings.Builder
		for _, a := range anns {
			line, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(line)
			b.WriteByte('\n')
		}
		again, err := ReadAnnotations([]byte(b.String()), "again.jsonl")
		if err != nil || !reflect.DeepEqual(again, anns) {
			t.Errorf("round trip: %v\n%+v\n%+v", err, again, anns)
		}
	})
}

func FuzzReadLCData(f *testing.F) {
	f.Add("index,instruction_difficulty\n0,1.5\n1,-2\n")
	f.Add(",instruction_difficulty\n1,NaN\n0,1\n")
	f.Add("index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n0,0.5,1,2,False\n")
	f.Add("\"a\nb\",c\n")
	f.Add(",np.tanh(std_delta_len),instruction_difficulty,not_gamed_baseline.astype(float)\nm,-1,0.5,0.25\n,1,2,3\n")
	f.Fuzz(func(t *testing.T, data string) {
		d, err := ReadLCData(csvFiles("f.csv", data))
		if err != nil {
			return
		}
		for i, v := range d.Difficulty {
			if math.IsNaN(v) {
				t.Errorf("difficulty %d is NaN", i)
			}
		}
		for m, w := range d.Published {
			if m == "" || math.IsNaN(w[0]) || math.IsNaN(w[1]) || math.IsNaN(w[2]) {
				t.Errorf("published weights %q: %v", m, w)
			}
		}
		for i, y := range d.Gamed.Y {
			if y < 0 || y > 1 || math.IsNaN(y) {
				t.Errorf("gamed preference %d = %v", i, y)
			}
		}
	})
}
