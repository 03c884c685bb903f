// Package benchdata gets the evaluation sets of the TPO paper onto any
// machine: it downloads each set's upstream files from their canonical
// locations (raw files at pinned commits), checks their sha256, converts them
// to tpo's JSON Lines and caches the result. A mirror (a directory or an
// http(s) URL laid out as NAME/FILE, as this project's ../shared/data is)
// replaces the canonical locations, for machines without network and for
// tests.
//
// The conversions write exactly the files of ../shared/data, byte for byte:
// each converted file's sha256 is pinned too, and checked.
package benchdata

import (
	"fmt"
	"slices"
	"strings"
)

// Set is one evaluation set: a name, what it is, its licence, and its files.
type Set struct {
	Name    string
	Title   string
	Licence string
	// Note says what a user should know: the subset taken, the
	// provenance of a copy.
	Note  string
	Files []File
}

// File is one converted file of a set. The first file of a set is its
// prompts; others (a baseline's answers) are named by Key.
type File struct {
	// Key names the file after the set's name, as NAME:KEY; "" for the
	// set's prompts.
	Key string
	// Name is the file's name in the cache and in a mirror.
	Name string
	// SHA256 and Rows describe the converted file.
	SHA256 string
	Rows   int
	// Sources are the upstream files the conversion reads, in order.
	Sources []Source
	convert func(src [][]byte) ([]byte, error)
}

// Source is an upstream file: its canonical locations (tried in order) and
// its sha256; Mirror is its name in a mirror's directory of the set.
type Source struct {
	Mirror string
	URLs   []string
	SHA256 string
}

const (
	rawGitHub = "https://raw.githubusercontent.com/"
	// mediaGitHub serves the content of files GitHub keeps in Git LFS.
	mediaGitHub = "https://media.githubusercontent.com/media/"
)

// The upstream files, each at a pinned commit.
var (
	math500Source = Source{Mirror: "original.jsonl", SHA256: "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132", URLs: []string{
		mediaGitHub + "openai/prm800k/7ecc794703b2877f63226f2477a49b34f9b25163/prm800k/math_splits/test.jsonl",
		rawGitHub + "MobileLLM/BudgetThinker/f0466b9d37595f46603387baa5930e312fefb7f5/evaluation/data/math500/test_ori.jsonl",
	}}
	xstestSource = Source{Mirror: "original.csv", SHA256: "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a", URLs: []string{
		rawGitHub + "paul-rottger/exaggerated-safety/d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d/xstest_prompts.csv",
	}}
	arenaQuestionSource = Source{Mirror: "original.jsonl", SHA256: "2650242d2883f22b2abd498f273b6a7e02253cce533f5c91a858e1d44aa3002f", URLs: []string{
		rawGitHub + "lmarena/arena-hard-auto/196f6b826783b3da7310e361a805fa36f0be83f3/data/arena-hard-v0.1/question.jsonl",
	}}
	arenaBaselineSource = Source{Mirror: "model_answer_gpt-4-0314.jsonl", SHA256: "0f6abc84de4600fde987d9db70f838f4ecdbd27a2f1f4058c12aa322a6f791b2", URLs: []string{
		rawGitHub + "lmarena/arena-hard-auto/196f6b826783b3da7310e361a805fa36f0be83f3/data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl",
	}}
	// alpacaOutputsSource is AlpacaEval 2's reference outputs, in the
	// tatsu-lab repository: the instructions of the set (and their
	// dataset) in its order, with gpt4_1106_preview's answers. The
	// instructions and datasets are those of the Hugging Face dataset's
	// alpaca_eval.json as copied by stanford-cs336 (the earlier source),
	// item for item.
	alpacaOutputsSource = Source{Mirror: "model_outputs_gpt4_1106_preview.json", SHA256: "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4", URLs: []string{
		rawGitHub + "tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20/results/gpt4_1106_preview/model_outputs.json",
	}}
	hhSource = Source{Mirror: "original.jsonl.gz", SHA256: "8be3fc1a13b27901631696f2be6f184c799f1baeaf145f53ac5db24960adc37b", URLs: []string{
		mediaGitHub + "anthropics/hh-rlhf/f95611684ee0c6471fa011987de2c2ef2f8ccb05/helpful-base/test.jsonl.gz",
		rawGitHub + "DaehanKim/EasyRLHF/45eccb72ddb8c18aa52dc2a184516380e06582fe/data/helpful-base/test.jsonl.gz",
	}}
	beavertailsSource = Source{Mirror: "original.json", SHA256: "568aac19f8615c78354b4700495d317188d71d2cfac8578f9f745b752b3e0f9f", URLs: []string{
		rawGitHub + "PKU-Alignment/eval-anything/16488a856ad19e7bb4d8276ddc4887b5ce3ba355/eval_anything/benchmarks/safedata/BeaverTails-Evaluation.json",
	}}
)

var sets = []Set{
	{
		Name: "math500", Title: "MATH-500: 500 competition problems with reference answers, by subject and level",
		Licence: "MIT (openai/prm800k; the problems are from the MATH dataset, MIT)",
		Note:    "openai/prm800k's test split (math_splits/test.jsonl); BudgetThinker's byte-identical copy is the second location",
		Files: []File{{Name: "math500.jsonl", Rows: 500, SHA256: "d1512c1f1d6b23f102de6a9a6a0d3729c16e975b693e4929e85d4a4d55a29fec",
			Sources: []Source{math500Source}, convert: convertMath500}},
	},
	{
		Name: "alpaca_eval", Title: "AlpacaEval: 805 instructions; alpaca_eval:baseline is AlpacaEval 2's reference, gpt4_1106_preview (GPT-4 Turbo)",
		Licence: "CC BY-NC 4.0 (AlpacaEval's data): non-commercial",
		Note:    "the instructions and the baseline both from tatsu-lab/alpaca_eval's results/gpt4_1106_preview/model_outputs.json at a pinned commit",
		Files: []File{
			{Name: "alpaca_eval.jsonl", Rows: 805, SHA256: "c9a2b95df66a37332a73fe2e1278b4e5c3d5ecbfcb1a0e0046d90052b69cc584",
				Sources: []Source{alpacaOutputsSource}, convert: convertAlpaca},
			{Key: "baseline", Name: "baseline_gpt4_1106_preview.jsonl", Rows: 805, SHA256: "f282449e5b18cae7ebdd8e283133145eefc4f0f20b15e4ee43bb0dd61f3bf9e5",
				Sources: []Source{alpacaOutputsSource}, convert: convertAlpacaBaseline},
		},
	},
	{
		Name: "arena_hard_v0.1", Title: "Arena-Hard-Auto v0.1: 500 questions; arena_hard_v0.1:baseline holds the answers of gpt-4-0314, its baseline",
		Licence: "Apache-2.0 (lmarena/arena-hard-auto)",
		Files: []File{
			{Name: "question.jsonl", Rows: 500, SHA256: "3feeb0f9aaa85a68a14166034bb999e0febaa3a5c7f6f3f12d5ab7b2f771237d",
				Sources: []Source{arenaQuestionSource}, convert: convertArenaQuestions},
			{Key: "baseline", Name: "baseline_gpt-4-0314.jsonl", Rows: 500, SHA256: "e5c05fdf7673def313ab5bc11334e0d4f3721cea204be188ef96d9050269ebc5",
				Sources: []Source{arenaQuestionSource, arenaBaselineSource}, convert: convertArenaBaseline},
		},
	},
	{
		Name: "xstest", Title: "XSTest v2: 250 safe and 200 unsafe prompts, 18 types",
		Licence: "CC BY 4.0 (paul-rottger/exaggerated-safety)",
		Files: []File{{Name: "xstest.jsonl", Rows: 450, SHA256: "d8281cce722f8c6b4cfc136c5b98b9943a72c73dbfeb49286fa24ed57c5e3eb8",
			Sources: []Source{xstestSource}, convert: convertXSTest}},
	},
	{
		Name: "hh_rlhf", Title: "HH-RLHF helpful-base test: the first 500 distinct first-turn prompts",
		Licence: "MIT (anthropics/hh-rlhf)",
		Note:    "not the paper's own sample of 500, which is not published; EasyRLHF's byte-identical copy is the second location",
		Files: []File{{Name: "helpful_base_test_first500.jsonl", Rows: 500, SHA256: "5ea629dc28c1f4b66d44802b3228713e13ee5327ff5344cf890ddb0bcb389c4c",
			Sources: []Source{hhSource}, convert: convertHH}},
	},
	{
		Name: "beavertails", Title: "BeaverTails-Evaluation: 700 unsafe prompts, 14 categories",
		Licence: "CC BY-NC 4.0 (PKU-Alignment/BeaverTails-Evaluation): non-commercial",
		Note:    "the Hugging Face test split as PKU-Alignment's eval-anything ships it",
		Files: []File{{Name: "beavertails.jsonl", Rows: 700, SHA256: "968c688e73db054e5e0f6fe9c8fda8939bc40ba38ea456c82647bb6d7a366d3f",
			Sources: []Source{beavertailsSource}, convert: convertBeaverTails}},
	},
}

// Sets returns every set tpo knows, in a fixed order.
func Sets() []Set { return slices.Clone(sets) }

// Ref names a file of a set: its set and the file.
type Ref struct {
	Set  Set
	File File
}

// String is the name that resolves to the file: NAME or NAME:KEY.
func (r Ref) String() string {
	if r.File.Key == "" {
		return r.Set.Name
	}
	return r.Set.Name + ":" + r.File.Key
}

// Lookup resolves a name: a set's name gives its prompts, NAME:KEY another
// of its files (arena_hard_v0.1:baseline).
func Lookup(name string) (Ref, bool) {
	setName, key, _ := strings.Cut(name, ":")
	for _, s := range sets {
		if s.Name != setName {
			continue
		}
		for _, f := range s.Files {
			if f.Key == key {
				return Ref{Set: s, File: f}, true
			}
		}
	}
	return Ref{}, false
}

// Names lists every name Lookup resolves.
func Names() []string {
	var names []string
	for _, s := range sets {
		for _, f := range s.Files {
			names = append(names, Ref{Set: s, File: f}.String())
		}
	}
	return names
}

// UnknownName is the error for a name Lookup does not know.
func UnknownName(name string) error {
	return fmt.Errorf("unknown data set %q (known: %s)", name, strings.Join(Names(), ", "))
}
