package tpotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pep440"
	"github.com/tpoproject/tpo/internal/vllmver"
)

// RewardRequest is one request received by a fake reward server.
type RewardRequest struct {
	Path string
	Body []byte
}

// TextReward is the default reward of the fake reward servers: the number
// of words in text divided by 10, minus 1, plus 2 for each occurrence of
// "good" and minus 2 for each "bad" (case-insensitive). It is deterministic
// and gives both negative and positive values, like a raw reward model.
func TextReward(text string) float64 {
	lower := strings.ToLower(text)
	return float64(len(strings.Fields(text)))/10 - 1 +
		2*float64(strings.Count(lower, "good")) - 2*float64(strings.Count(lower, "bad"))
}

// LastReplyReward is TextReward of the conversation's last assistant turn.
func LastReplyReward(messages []tpo.Message) float64 {
	for i := len(messages) - 1; i >= 0; i-- {
		if messages[i].Role == tpo.RoleAssistant {
			return TextReward(messages[i].Content)
		}
	}
	return TextReward("")
}

// RenderChat is the fake chat template of VLLMRewardServer: each turn as
// "<|role|>\ncontent<|end|>\n", then "<|assistant|>\n" when
// addGenerationPrompt is set.
func RenderChat(messages []tpo.Message, addGenerationPrompt bool) string {
	var b strings.Builder
	for _, m := range messages {
		fmt.Fprintf(&b, "<|%s|>\n%s<|end|>\n", m.Role, m.Content)
	}
	if addGenerationPrompt {
		b.WriteString("<|assistant|>\n")
	}
	return b.String()
}

// TokenIDs is the fake tokenizer of VLLMRewardServer: a BOS token 1, then
// each byte of text plus 3.
func TokenIDs(text string) []int {
	ids := make([]int, 0, len(text)+1)
	ids = append(ids, 1)
	for i := 0; i < len(text); i++ {
		ids = append(ids, int(text[i])+3)
	}
	return ids
}

// VLLMRewardOptions configures a VLLMRewardServer. The zero value works.
type VLLMRewardOptions struct {
	// Reward scores a whole conversation whose last turn is the assistant
	// reply (default LastReplyReward).
	Reward func(messages []tpo.Message) float64
	// Version is the vLLM version emulated and answered on GET /version
	// (default vllmver.Current, "0.12.0"). Before 0.11.1 use_activation is
	// ignored and the legacy field decides (activation from 0.10.1,
	// softmax before); from 0.11.1 use_activation decides, except that an
	// activation field present at all turns the activation on. Before
	// 0.11.1 /pooling ignores task. An invalid version fails the test.
	Version string
	// HideVersion makes GET /version answer 404, as a server (or a proxy)
	// without it does.
	HideVersion bool
	// IgnoreUseActivation emulates a vLLM that predates use_activation and
	// is sent no legacy field: the rewardSigmoid is always applied.
	IgnoreUseActivation bool
	// BF16 rounds activated scores to bfloat16, as a bf16 model returns
	// them: sigmoid outputs of rewards above about +6.2 become exactly 1.
	BF16 bool
	// RefuseTokenIDs makes /classify refuse lists of token ids with the
	// 400 and pydantic message ("Input should be a valid string") of some
	// vLLM 0.11.2-0.12 servers.
	RefuseTokenIDs bool
	// PoolingGenerationPrompt makes /pooling add the generation prompt
	// when the request does not say add_generation_prompt, as very old
	// vLLM versions did: the score is then read after an empty assistant
	// turn (LastReplyReward gives -1 for every response).
	PoolingGenerationPrompt bool
	// MaxModelLen is the model's context length in tokens (default 4096);
	// longer inputs get vLLM's 400.
	MaxModelLen int
	// HideMaxModelLen leaves max_model_len out of /tokenize answers, as
	// older vLLM versions do.
	HideMaxModelLen bool
	// ReverseClassify makes /classify list its results in reverse order.
	ReverseClassify bool
	// Models, when set, are the served model names: GET /v1/models lists
	// them, and a scoring request naming another model gets vLLM's 404
	// ("The model `x` does not exist."). Unset, GET /v1/models answers
	// 404 and any model name is accepted.
	Models []string
	// Intercept, if set, sees every request first (after it is recorded)
	// and may answer it itself by returning true.
	Intercept func(w http.ResponseWriter, r *http.Request, body []byte) bool
}

// VLLMRewardServer is a fake vLLM pooling runner serving a reward model on
// POST /tokenize, /classify and /pooling and GET /version, for tests.
// /classify accepts only token ids produced by its /tokenize. A
// conversation rendered with the generation prompt is scored as if it
// ended with an empty assistant turn.
type VLLMRewardServer struct {
	URL string // the root URL, without /v1

	opts    VLLMRewardOptions
	version pep440.Version

	mu       sync.Mutex
	requests []RewardRequest
	rendered map[string][]tpo.Message // token ids key -> conversation
}

// NewVLLMRewardServer starts a fake vLLM reward server, closed when the
// test ends.
func NewVLLMRewardServer(t testing.TB, opts VLLMRewardOptions) *VLLMRewardServer {
	t.Helper()
	if opts.Reward == nil {
		opts.Reward = LastReplyReward
	}
	if opts.MaxModelLen == 0 {
		opts.MaxModelLen = 4096
	}
	if opts.Version == "" {
		opts.Version = vllmver.Current
	}
	v, err := pep440.Parse(opts.Version)
	if err != nil {
		t.Fatalf("tpotest: fake vLLM: %v", err)
	}
	s := &VLLMRewardServer{opts: opts, version: v, rendered: make(map[string][]tpo.Message)}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Requests returns the requests received so far, in arrival order.
func (s *VLLMRewardServer) Requests() []RewardRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count returns how many requests were made to path.
func (s *VLLMRewardServer) Count(path string) int {
	return rewardCount(s.Requests(), path)
}

func rewardCount(reqs []RewardRequest, path string) int {
	n := 0
	for _, r := range reqs {
		if r.Path == path {
			n++
		}
	}
	return n
}

func (s *VLLMRewardServer) serve(w http.ResponseWriter, r *http.Request) {
	body, ok := rewardRead(w, r, &s.mu, &s.requests)
	if !ok {
		return
	}
	if s.opts.Intercept != nil && s.opts.Intercept(w, r, body) {
		return
	}
	if r.Method == http.MethodGet {
		s.get(w, r)
		return
	}
	if r.Method != http.MethodPost {
		vllmRewardError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	var named struct {
		Model string `json:"model"`
	}
	json.Unmarshal(body, &named)
	if len(s.opts.Models) > 0 && named.Model != "" && !slices.Contains(s.opts.Models, named.Model) {
		vllmRewardError(w, http.StatusNotFound, "The model `"+named.Model+"` does not exist.")
		return
	}
	switch r.URL.Path {
	case "/tokenize":
		s.tokenize(w, body)
	case "/classify":
		s.classify(w, body)
	case "/pooling":
		s.pooling(w, body)
	default:
		vllmRewardError(w, http.StatusNotFound, "not found: "+r.URL.Path)
	}
}

// get answers GET /version and, with Models, GET /v1/models.
func (s *VLLMRewardServer) get(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/version" && !s.opts.HideVersion:
		rewardJSON(w, map[string]string{"version": s.opts.Version})
	case r.URL.Path == "/v1/models" && len(s.opts.Models) > 0:
		type model struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		}
		var data []model
		for _, id := range s.opts.Models {
			data = append(data, model{id, "model"})
		}
		rewardJSON(w, map[string]any{"object": "list", "data": data})
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"detail":"Not Found"}`) // FastAPI's
	}
}

func (s *VLLMRewardServer) tokenize(w http.ResponseWriter, body []byte) {
	var req struct {
		Messages            []tpo.Message `json:"messages"`
		AddGenerationPrompt *bool         `json:"add_generation_prompt"`
	}
	if err := rewardDecode(body, &req); err != nil || len(req.Messages) == 0 {
		vllmRewardError(w, http.StatusBadRequest, fmt.Sprintf("invalid /tokenize request: %v", err))
		return
	}
	addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	ids := TokenIDs(RenderChat(req.Messages, addGen))
	s.mu.Lock()
	s.rendered[rewardIDsKey(ids)] = scoredTurns(req.Messages, addGen)
	s.mu.Unlock()
	resp := map[string]any{"count": len(ids), "tokens": ids}
	if !s.opts.HideMaxModelLen {
		resp["max_model_len"] = s.opts.MaxModelLen
	}
	rewardJSON(w, resp)
}

// scoredTurns returns the conversation whose last assistant turn the reward
// is read from: with the generation prompt, an empty one.
func scoredTurns(messages []tpo.Message, addGenerationPrompt bool) []tpo.Message {
	if !addGenerationPrompt {
		return messages
	}
	return append(slices.Clip(messages), tpo.Message{Role: tpo.RoleAssistant})
}

// activationFields are the request fields that turn vLLM's activation on
// or off, depending on the version.
type activationFields struct {
	UseActivation *bool `json:"use_activation"`
	Activation    *bool `json:"activation"`
	Softmax       *bool `json:"softmax"`
}

// activate applies the activation to v if the server's version applies it
// to a request with fields f.
func (s *VLLMRewardServer) activate(v float64, f activationFields) float64 {
	if !s.opts.IgnoreUseActivation && !vllmver.Activated(s.version, f.UseActivation, f.Activation, f.Softmax) {
		return v
	}
	v = rewardSigmoid(v)
	if s.opts.BF16 {
		v = roundBF16(v)
	}
	return v
}

// roundBF16 rounds x to bfloat16 precision (8 significant bits), to
// nearest even.
func roundBF16(x float64) float64 {
	b := math.Float32bits(float32(x))
	b += 0x7fff + (b>>16)&1
	return float64(math.Float32frombits(b &^ 0xffff))
}

// refuseTokenIDs answers a /classify request with token ids as some vLLM
// 0.11.2-0.12 servers do: a 400 whose message is pydantic's validation
// error, each accepted form of input failing.
func refuseTokenIDs(w http.ResponseWriter, input [][]int) {
	ids, _ := json.Marshal(input)
	msg := fmt.Sprintf("1 validation error for ClassificationCompletionRequest\ninput.str\n  "+
		"Input should be a valid string [type=string_type, input_value=%s, input_type=list]", snippetIDs(string(ids)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	rewardEncode(w, map[string]any{"error": map[string]any{
		"message": msg, "type": "BadRequestError", "param": nil, "code": http.StatusBadRequest,
	}})
}

// snippetIDs shortens a list as pydantic does in its messages.
func snippetIDs(s string) string {
	if len(s) <= 50 {
		return s
	}
	return s[:24] + "..." + s[len(s)-24:]
}

func (s *VLLMRewardServer) tooLong(w http.ResponseWriter, n int) bool {
	if n <= s.opts.MaxModelLen {
		return false
	}
	vllmRewardError(w, http.StatusBadRequest, fmt.Sprintf(
		"This model's maximum context length is %d tokens. However, you requested %d tokens in the input for classification. Please reduce the length of the input.",
		s.opts.MaxModelLen, n))
	return true
}

func (s *VLLMRewardServer) classify(w http.ResponseWriter, body []byte) {
	var req struct {
		Input [][]int `json:"input"`
		activationFields
	}
	if err := rewardDecode(body, &req); err != nil || len(req.Input) == 0 {
		vllmRewardError(w, http.StatusBadRequest, fmt.Sprintf("invalid /classify request: %v", err))
		return
	}
	if s.opts.RefuseTokenIDs {
		refuseTokenIDs(w, req.Input)
		return
	}
	type result struct {
		Index      int       `json:"index"`
		Label      string    `json:"label"`
		Probs      []float64 `json:"probs"`
		NumClasses int       `json:"num_classes"`
	}
	data := make([]result, len(req.Input))
	tokens := 0
	for i, ids := range req.Input {
		if s.tooLong(w, len(ids)) {
			return
		}
		s.mu.Lock()
		msgs, ok := s.rendered[rewardIDsKey(ids)]
		s.mu.Unlock()
		if !ok {
			vllmRewardError(w, http.StatusBadRequest, fmt.Sprintf("input %d: token ids were not produced by /tokenize", i))
			return
		}
		v := s.activate(s.opts.Reward(msgs), req.activationFields)
		data[i] = result{Index: i, Label: "LABEL_0", Probs: []float64{v}, NumClasses: 1}
		tokens += len(ids)
	}
	if s.opts.ReverseClassify {
		slices.Reverse(data)
	}
	rewardJSON(w, map[string]any{
		"id": "classify-fake", "object": "list", "created": 0, "model": "fake-rm",
		"data":  data,
		"usage": map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

func (s *VLLMRewardServer) pooling(w http.ResponseWriter, body []byte) {
	var req struct {
		Task                string        `json:"task"`
		Messages            []tpo.Message `json:"messages"`
		AddGenerationPrompt *bool         `json:"add_generation_prompt"`
		activationFields
	}
	if err := rewardDecode(body, &req); err != nil || len(req.Messages) == 0 {
		vllmRewardError(w, http.StatusBadRequest, fmt.Sprintf("invalid /pooling request: %v", err))
		return
	}
	addGen := s.opts.PoolingGenerationPrompt
	if req.AddGenerationPrompt != nil {
		addGen = *req.AddGenerationPrompt
	}
	ids := TokenIDs(RenderChat(req.Messages, addGen))
	if s.tooLong(w, len(ids)) {
		return
	}
	v := s.activate(s.opts.Reward(scoredTurns(req.Messages, addGen)), req.activationFields)
	if !vllmver.AtLeast(s.version, vllmver.UseActivation) {
		req.Task = "classify" // older versions ignore task: the model's own
	}
	var data any
	switch req.Task {
	case "classify":
		data = []float64{v}
	case "token_classify":
		// One value per token; only the last one is the reward.
		rows := make([][]float64, len(ids))
		for i := range rows {
			rows[i] = []float64{s.activate(-float64(i%7), req.activationFields)}
		}
		rows[len(rows)-1][0] = v
		data = rows
	default:
		vllmRewardError(w, http.StatusBadRequest, fmt.Sprintf("unsupported task %q", req.Task))
		return
	}
	rewardJSON(w, map[string]any{
		"id": "pool-fake", "object": "list", "created": 0, "model": "fake-rm",
		"data":  []any{map[string]any{"index": 0, "object": "pooling", "data": data}},
		"usage": map[string]int{"prompt_tokens": len(ids), "total_tokens": len(ids)},
	})
}

// DefaultTEIVersion is the text-embeddings-inference version TEIServer
// emulates by default.
const DefaultTEIVersion = "1.9.3"

// TEIOptions configures a TEIServer. The zero value works.
type TEIOptions struct {
	// Reward scores a (prompt, response) pair (default: TextReward of the
	// response). With several labels, label i scores Reward - i.
	Reward func(prompt, response string) float64
	// Labels are the model's labels in index order (default ["LABEL_0"]).
	Labels []string
	// MaxBatch is --max-client-batch-size (default 32).
	MaxBatch int
	// Version is the TEI version emulated (default DefaultTEIVersion).
	// From 1.9 a request without "truncate" is truncated (--auto-truncate
	// defaults to true) and validation errors are 422; before, it is not
	// and they are 413. An invalid version fails the test.
	Version string
	// MaxInputLength is the model's limit in tokens (default 512). A pair
	// counts TEIPairTokens tokens; a longer one is refused, or truncated
	// (words dropped from the end of the longer text) when the request
	// says truncate.
	MaxInputLength int
	// PayloadLimit, if positive, is the largest request body in bytes
	// (--payload-limit); a larger one gets axum's plain-text 413.
	PayloadLimit int
	// Intercept, if set, sees every request first (after it is recorded)
	// and may answer it itself by returning true.
	Intercept func(w http.ResponseWriter, r *http.Request, body []byte) bool
}

// TEIServer is a fake text-embeddings-inference server serving a
// sequence-classification model on POST /predict and GET /info, for tests.
type TEIServer struct {
	URL string

	opts      TEIOptions
	truncates bool // truncate when a request does not say (from 1.9)
	invalid   int  // the status of validation errors

	mu       sync.Mutex
	requests []RewardRequest
}

// NewTEIServer starts a fake TEI server, closed when the test ends.
func NewTEIServer(t testing.TB, opts TEIOptions) *TEIServer {
	t.Helper()
	if opts.Reward == nil {
		opts.Reward = func(_, response string) float64 { return TextReward(response) }
	}
	if len(opts.Labels) == 0 {
		opts.Labels = []string{"LABEL_0"}
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 32
	}
	if opts.Version == "" {
		opts.Version = DefaultTEIVersion
	}
	if opts.MaxInputLength == 0 {
		opts.MaxInputLength = 512
	}
	v, err := pep440.Parse(opts.Version)
	if err != nil {
		t.Fatalf("tpotest: fake TEI: %v", err)
	}
	s := &TEIServer{opts: opts, truncates: true, invalid: http.StatusUnprocessableEntity}
	if v.Less(pep440.MustParse("1.9")) {
		s.truncates, s.invalid = false, http.StatusRequestEntityTooLarge
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// TEIPairTokens is the length of a pair for TEIServer: 3 special tokens
// plus one token per word of each text.
func TEIPairTokens(prompt, response string) int {
	return 3 + len(strings.Fields(prompt)) + len(strings.Fields(response))
}

// Requests returns the requests received so far, in arrival order.
func (s *TEIServer) Requests() []RewardRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count returns how many requests were made to path.
func (s *TEIServer) Count(path string) int {
	return rewardCount(s.Requests(), path)
}

type teiRewardPrediction struct {
	Score float64 `json:"score"`
	Label string  `json:"label"`
}

func (s *TEIServer) serve(w http.ResponseWriter, r *http.Request) {
	body, ok := rewardRead(w, r, &s.mu, &s.requests)
	if !ok {
		return
	}
	if s.opts.Intercept != nil && s.opts.Intercept(w, r, body) {
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/info":
		rewardJSON(w, s.info())
	case r.Method == http.MethodPost && r.URL.Path == "/predict":
		s.predictHandler(w, body)
	default:
		w.WriteHeader(http.StatusNotFound) // axum: an empty 404
	}
}

// info is TEI's GET /info answer.
func (s *TEIServer) info() map[string]any {
	id2label, label2id := map[string]string{}, map[string]int{}
	for i, l := range s.opts.Labels {
		id2label[fmt.Sprint(i)] = l
		label2id[l] = i
	}
	return map[string]any{
		"model_id": "fake/reward-model", "model_sha": nil, "model_dtype": "float16",
		"model_type":              map[string]any{"classifier": map[string]any{"id2label": id2label, "label2id": label2id}},
		"max_concurrent_requests": 512, "max_input_length": s.opts.MaxInputLength, "max_batch_tokens": 16384,
		"max_batch_requests": nil, "max_client_batch_size": s.opts.MaxBatch, "auto_truncate": s.truncates,
		"tokenization_workers": 4, "version": s.opts.Version, "sha": nil, "docker_label": nil,
	}
}

func (s *TEIServer) predictHandler(w http.ResponseWriter, body []byte) {
	if s.opts.PayloadLimit > 0 && len(body) > s.opts.PayloadLimit {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		fmt.Fprint(w, "Failed to buffer the request body: length limit exceeded")
		return
	}
	var req struct {
		Inputs    json.RawMessage `json:"inputs"`
		RawScores bool            `json:"raw_scores"`
		Truncate  *bool           `json:"truncate"`
	}
	if err := rewardDecode(body, &req); err != nil {
		// axum's own rejection: plain text.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, "Failed to deserialize the JSON body into the target type: "+err.Error())
		return
	}
	pairs, batch, err := teiRewardInputs(req.Inputs)
	if err != nil {
		teiRewardError(w, http.StatusUnprocessableEntity, err.Error(), "Validation")
		return
	}
	if batch && len(pairs) > s.opts.MaxBatch {
		teiRewardError(w, s.invalid,
			fmt.Sprintf("batch size %d > maximum allowed batch size %d", len(pairs), s.opts.MaxBatch), "Validation")
		return
	}
	truncate := s.truncates
	if req.Truncate != nil {
		truncate = *req.Truncate
	}
	out := make([][]teiRewardPrediction, len(pairs))
	for i, p := range pairs {
		if n := TEIPairTokens(p[0], p[1]); n > s.opts.MaxInputLength && !truncate {
			teiRewardError(w, s.invalid, fmt.Sprintf("Input validation error: `inputs` must have less than %d tokens. Given: %d",
				s.opts.MaxInputLength, n), "Validation")
			return
		}
		out[i] = s.predict(truncatePair(p, s.opts.MaxInputLength), req.RawScores)
	}
	if batch {
		rewardJSON(w, out)
	} else {
		rewardJSON(w, out[0])
	}
}

// truncatePair drops words from the end of the longer text of p until it
// fits in limit tokens (TEI truncates the longest text first).
func truncatePair(p [2]string, limit int) [2]string {
	if TEIPairTokens(p[0], p[1]) <= limit {
		return p
	}
	a, b := strings.Fields(p[0]), strings.Fields(p[1])
	for 3+len(a)+len(b) > limit && len(a)+len(b) > 0 {
		if len(a) > len(b) {
			a = a[:len(a)-1]
		} else {
			b = b[:len(b)-1]
		}
	}
	return [2]string{strings.Join(a, " "), strings.Join(b, " ")}
}

// predict scores one pair like TEI: raw logits or, without raw_scores, a
// rewardSigmoid (one label) or softmax (several), sorted by descending score.
func (s *TEIServer) predict(p [2]string, raw bool) []teiRewardPrediction {
	base := s.opts.Reward(p[0], p[1])
	preds := make([]teiRewardPrediction, len(s.opts.Labels))
	for i, l := range s.opts.Labels {
		preds[i] = teiRewardPrediction{Score: base - float64(i), Label: l}
	}
	if !raw {
		if len(preds) == 1 {
			preds[0].Score = rewardSigmoid(preds[0].Score)
		} else {
			var sum float64
			for _, p := range preds {
				sum += math.Exp(p.Score)
			}
			for i := range preds {
				preds[i].Score = math.Exp(preds[i].Score) / sum
			}
		}
	}
	slices.SortStableFunc(preds, func(a, b teiRewardPrediction) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return preds
}

// teiRewardInputs reads TEI's inputs field: a text, a pair, or a batch of texts
// and pairs. A text alone is scored as the pair (text, "").
func teiRewardInputs(raw json.RawMessage) (pairs [][2]string, batch bool, err error) {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return [][2]string{{text, ""}}, false, nil
	}
	var pair []string
	if json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		return [][2]string{{pair[0], pair[1]}}, false, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 {
		return nil, false, fmt.Errorf("inputs must be a text, a pair or a non-empty batch")
	}
	for i, it := range items {
		if json.Unmarshal(it, &text) == nil {
			pairs = append(pairs, [2]string{text, ""})
			continue
		}
		var p []string
		if json.Unmarshal(it, &p) != nil || len(p) != 2 {
			return nil, false, fmt.Errorf("inputs[%d] must be a text or a pair of texts", i)
		}
		pairs = append(pairs, [2]string{p[0], p[1]})
	}
	return pairs, true, nil
}

func rewardRead(w http.ResponseWriter, r *http.Request, mu *sync.Mutex, reqs *[]RewardRequest) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	mu.Lock()
	*reqs = append(*reqs, RewardRequest{Path: r.URL.Path, Body: body})
	mu.Unlock()
	return body, true
}

// rewardDecode decodes body into v, accepting unknown fields as vLLM and
// TEI do.
func rewardDecode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	return dec.Decode(v)
}

func rewardIDsKey(ids []int) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

func rewardSigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func rewardJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	rewardEncode(w, v)
}

// rewardEncode writes v as JSON without HTML escaping, as Python and Rust
// servers do.
func rewardEncode(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// vllmRewardError writes an error in current vLLM's shape.
func vllmRewardError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	rewardEncode(w, map[string]any{"error": map[string]any{
		"message": msg, "type": http.StatusText(status), "param": nil, "code": status,
	}})
}

// teiRewardError writes an error in TEI's shape.
func teiRewardError(w http.ResponseWriter, status int, msg, typ string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	rewardEncode(w, map[string]string{"error": msg, "error_type": typ})
}
