package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/openai"
)

// judgeFlags are the flags of the commands that ask a judge model:
// tpo eval alpaca and tpo eval arena-hard.
type judgeFlags struct {
	url, model, key string
	maxTokens       int
	temperature     float64
	timeout         time.Duration
	retries         int
	concurrency     int
}

func (j *judgeFlags) register(fs *flag.FlagSet, maxTokens int) {
	fs.StringVar(&j.url, "judge-url", "", "judge server base `URL` (OpenAI-compatible, ending in /v1; default $TPO_JUDGE_URL)")
	fs.StringVar(&j.model, "judge-model", "", "judge model `name` (default: the server's only model)")
	fs.StringVar(&j.key, "judge-key", "", "judge API `key` (default $TPO_JUDGE_API_KEY, then $OPENAI_API_KEY)")
	fs.IntVar(&j.maxTokens, "judge-max-tokens", maxTokens, "tokens the judge may write")
	fs.Float64Var(&j.temperature, "judge-temperature", 0, "temperature of the judge")
	fs.DurationVar(&j.timeout, "judge-timeout", 10*time.Minute, "timeout of one judge request attempt")
	fs.IntVar(&j.retries, "retries", 4, "retries of a failed judge request (connection errors, 408, 429, 5xx)")
	fs.IntVar(&j.concurrency, "concurrency", 8, "most judge requests in flight")
}

// check settles the usage errors of the judge flags.
func (j *judgeFlags) check() error {
	j.url = envOr(j.url, "TPO_JUDGE_URL")
	if j.url == "" {
		return usagef("give --judge-url URL: the judge's OpenAI-compatible server")
	}
	if j.maxTokens <= 0 {
		return usagef("--judge-max-tokens must be positive")
	}
	return nil
}

// client connects to the judge, checking that it serves the model.
func (j *judgeFlags) client(ctx context.Context, env *environ) (*openai.Client, error) {
	return chatModel(ctx, chatOptions{name: "judge", urls: []string{j.url}, model: j.model, check: true,
		key: envOr(j.key, "TPO_JUDGE_API_KEY", "OPENAI_API_KEY"), timeout: j.timeout, retries: j.retries,
		inFlight: j.concurrency}, env.log)
}

func (j *judgeFlags) sampling() tpo.Sampling {
	return tpo.Sampling{Temperature: j.temperature, TopP: 1, MaxTokens: j.maxTokens}
}

// question is one question of a benchmark, in the order of its data file.
type question struct {
	id, prompt, dataset string
}

// readQuestions reads the questions of a data file in order: any file tpo
// run reads; dataset is the record's "dataset" field, when it has one.
func readQuestions(path string, env *environ) ([]question, error) {
	var qs []question
	err := eachRecord(path, dataset.Options{}, "data", env, func(rec dataset.Record) {
		qs = append(qs, question{id: rec.Item.ID, prompt: rec.Item.Prompt()})
	})
	if err != nil {
		return nil, err
	}
	sets, err := readDatasetField(path)
	if err != nil {
		return nil, inputError("data", err)
	}
	for i := range qs {
		qs[i].dataset = sets[qs[i].id]
	}
	return qs, nil
}

// readDatasetField reads the "dataset" field of a JSON Lines file's
// records by id (AlpacaEval's subset of each instruction).
func readDatasetField(path string) (map[string]string, error) {
	m := map[string]string{}
	err := eachJSONObject(path, func(rec map[string]json.RawMessage) {
		var id, set string
		if json.Unmarshal(rec["id"], &id) == nil && json.Unmarshal(rec["dataset"], &set) == nil {
			m[id] = set
		}
	})
	return m, err
}

// eachJSONObject calls fn with every JSON object line of a file; other
// lines are skipped (the dataset reader reports them).
func eachJSONObject(path string, fn func(map[string]json.RawMessage)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), dataset.DefaultMaxLineBytes)
	for sc.Scan() {
		var rec map[string]json.RawMessage
		if json.Unmarshal(bytes.TrimSpace(sc.Bytes()), &rec) == nil {
			fn(rec)
		}
	}
	return sc.Err()
}

// firstString returns the first of fields that the first record of a JSON
// Lines file has as a string, or "".
func firstString(path string, fields ...string) string {
	out := ""
	_ = eachJSONObject(path, func(rec map[string]json.RawMessage) {
		if out != "" {
			return
		}
		for _, f := range fields {
			var s string
			if json.Unmarshal(rec[f], &s) == nil && s != "" {
				out = s
				return
			}
		}
		out = "-" // the first record has none: stop looking
	})
	if out == "-" {
		return ""
	}
	return out
}

// modelName is the name of the model whose answers a results file holds:
// the given name, else the file's name without its extension.
func modelName(given, resultsPath string) string {
	if given != "" {
		return given
	}
	base := filepath.Base(resultsPath)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// missingAnswers warns of the questions without an answer, or without the
// baseline's, and returns how many of each.
func missingAnswers(env *environ, qs []question, answers, baseline map[string]string) (noAnswer, noBaseline []string) {
	for _, q := range qs {
		if _, ok := answers[q.id]; !ok {
			noAnswer = append(noAnswer, q.id)
		} else if _, ok := baseline[q.id]; !ok {
			noBaseline = append(noBaseline, q.id)
		}
	}
	if len(noAnswer) > 0 {
		fmt.Fprintf(env.stderr, "warning: %s of --data %s no answer in the results; %s not judged, and the figures are over the others: %s\n",
			plural(len(noAnswer), "question", "questions"), pick(len(noAnswer), "has", "have"), pick(len(noAnswer), "it is", "they are"), idList(noAnswer, maxListed))
	}
	if len(noBaseline) > 0 {
		fmt.Fprintf(env.stderr, "warning: %s no answer in --baseline; %s not judged: %s\n",
			plural(len(noBaseline), "question has", "questions have"), pick(len(noBaseline), "it is", "they are"), idList(noBaseline, maxListed))
	}
	return noAnswer, noBaseline
}
