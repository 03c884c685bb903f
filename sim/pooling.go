package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/tpoproject/tpo/internal/vllmver"
)

// rewardFaults are the faults of the reward endpoints.
func (s *Server) rewardFaults() Faults {
	if s.opts.RewardFaults != nil {
		return *s.opts.RewardFaults
	}
	return s.opts.Faults
}

// rewardCall starts a call to a reward endpoint: it draws and applies the
// first part of a fault, and reports whether the handler should go on.
func (s *Server) rewardCall(w http.ResponseWriter, r *http.Request, endpoint string) (fault, bool) {
	f := s.rewardFaults()
	k, style := s.drawFault(f, endpoint)
	ft := fault{kind: k, style: style, f: f}
	return ft, !s.before(r.Context(), w, ft)
}

// score takes the simulated time of scoring texts of tokens tokens in all,
// counts the call and returns the scores of texts (the response parts).
func (s *Server) score(w http.ResponseWriter, r *http.Request, texts []string, tokens int, activation bool) ([]float64, bool) {
	d := s.opts.RewardBase.Seconds() + s.opts.RewardPerToken.Seconds()*float64(tokens)
	if !s.simSleep(r.Context(), d) {
		if r.Context().Err() == nil {
			s.writeError(w, http.StatusServiceUnavailable, "the simulated server is shutting down")
		}
		return nil, false
	}
	s.mu.Lock()
	s.counts.rewardCalls++
	s.counts.rewardInputs += int64(len(texts))
	s.counts.rewardTokens += int64(tokens)
	s.mu.Unlock()
	scores := make([]float64, len(texts))
	for i, t := range texts {
		scores[i] = s.Reward(t)
		if activation {
			scores[i] = bf16(sigmoid(scores[i]))
		}
	}
	return scores, true
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// bf16 rounds x to bfloat16 precision, as a model running in bf16 returns
// it.
func bf16(x float64) float64 {
	b := math.Float32bits(float32(x))
	b += 0x7fff + (b>>16)&1 // round to nearest even
	return float64(math.Float32frombits(b &^ 0xffff))
}

// activation reads vLLM's use_activation flag and its older names.
type activation struct {
	UseActivation *bool `json:"use_activation"`
	Activation    *bool `json:"activation"`
	Softmax       *bool `json:"softmax"`
}

// activated reports whether the simulated vLLM version applies the
// activation to a request with fields a: unless the field it reads turns it
// off (use_activation from 0.11.1, activation from 0.10.1, softmax
// before), and from 0.11.1 always when a legacy activation field is
// present.
func (s *Server) activated(a activation) bool {
	return vllmver.Activated(s.version, a.UseActivation, a.Activation, a.Softmax)
}

// handleVersion answers GET /version as vLLM does.
func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	s.count(EndpointVersion)
	s.respond(w, http.StatusOK, map[string]string{"version": s.opts.VLLMVersion}, fault{})
}

type poolingUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	TotalTokens      int `json:"total_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	s.count(EndpointTokenize)
	var req struct {
		Model               string        `json:"model"`
		Messages            []chatMessage `json:"messages"`
		Prompt              *string       `json:"prompt"`
		AddGenerationPrompt *bool         `json:"add_generation_prompt"`
	}
	if !s.decode(w, r, &req) || !s.checkModel(w, req.Model, s.opts.RewardModel, s.opts.Model) {
		return
	}
	var text string
	switch {
	case req.Messages != nil:
		text = render(req.Messages, req.AddGenerationPrompt == nil || *req.AddGenerationPrompt)
	case req.Prompt != nil:
		text = *req.Prompt
	default:
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, "either messages or prompt is required", "messages"))
		return
	}
	ft, ok := s.rewardCall(w, r, EndpointTokenize)
	if !ok {
		return
	}
	tokens := encodeTokens(text)
	s.respond(w, http.StatusOK, map[string]any{
		"count": len(tokens), "max_model_len": s.opts.MaxModelLen, "tokens": tokens,
	}, ft)
}

// classifyInputs reads /classify's input: a string, a list of strings, a
// list of token ids or a list of token id lists.
// isStrings reports whether a /classify input is a string or a list of
// strings.
func isStrings(raw json.RawMessage) bool {
	var one string
	var strs []string
	return json.Unmarshal(raw, &one) == nil || json.Unmarshal(raw, &strs) == nil
}

func classifyInputs(raw json.RawMessage) ([]string, error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil {
		return strs, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		t, err := decodeTokens(ids)
		if err != nil {
			return nil, err
		}
		return []string{t}, nil
	}
	var lists [][]int64
	if err := json.Unmarshal(raw, &lists); err != nil {
		return nil, errors.New("input must be a string, a list of strings, a list of token ids or a list of token id lists")
	}
	texts := make([]string, len(lists))
	for i, l := range lists {
		t, err := decodeTokens(l)
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
		texts[i] = t
	}
	return texts, nil
}

func (s *Server) handleClassify(w http.ResponseWriter, r *http.Request) {
	s.count(EndpointClassify)
	var req struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
		activation
	}
	if !s.decode(w, r, &req) || !s.checkModel(w, req.Model, s.opts.RewardModel) {
		return
	}
	if s.opts.RefuseTokenIDs && !isStrings(req.Input) {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest,
			"1 validation error:\n  {'type': 'string_type', 'loc': ('body', 'input', 'str'), 'msg': 'Input should be a valid string', 'input': [...]}", "input"))
		return
	}
	texts, err := classifyInputs(req.Input)
	if err == nil && len(texts) == 0 {
		err = errors.New("input must not be empty")
	}
	if err != nil {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, err.Error(), "input"))
		return
	}
	tokens := 0
	responses := make([]string, len(texts))
	for i, t := range texts {
		n := tokenCount(t)
		if n > s.opts.MaxModelLen {
			writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, fmt.Sprintf(
				"This model's maximum context length is %d tokens. However, you requested %d tokens in the input for classification. Please reduce the length of the input.",
				s.opts.MaxModelLen, n), "input"))
			return
		}
		tokens += n
		responses[i] = lastAssistant(t)
	}
	ft, ok := s.rewardCall(w, r, EndpointClassify)
	if !ok {
		return
	}
	scores, ok := s.score(w, r, responses, tokens, s.activated(req.activation))
	if !ok {
		return
	}
	type item struct {
		Index      int       `json:"index"`
		Label      string    `json:"label"`
		Probs      []float64 `json:"probs"`
		NumClasses int       `json:"num_classes"`
	}
	data := make([]item, len(scores))
	for i, sc := range scores {
		data[i] = item{Index: i, Label: "LABEL_0", Probs: []float64{sc}, NumClasses: 1}
	}
	s.respond(w, http.StatusOK, map[string]any{
		"id": "classify-" + strconv.FormatInt(time.Now().UnixNano(), 36), "object": "list",
		"created": time.Now().Unix(), "model": s.opts.RewardModel, "data": data,
		"usage": poolingUsage{PromptTokens: tokens, TotalTokens: tokens},
	}, ft)
}

func (s *Server) handlePooling(w http.ResponseWriter, r *http.Request) {
	s.count(EndpointPooling)
	var req struct {
		Model               string        `json:"model"`
		Task                string        `json:"task"`
		Messages            []chatMessage `json:"messages"`
		Input               *string       `json:"input"`
		AddGenerationPrompt *bool         `json:"add_generation_prompt"`
		activation
	}
	if !s.decode(w, r, &req) || !s.checkModel(w, req.Model, s.opts.RewardModel) {
		return
	}
	addGen := s.opts.PoolingGenerationPrompt
	if req.AddGenerationPrompt != nil {
		addGen = *req.AddGenerationPrompt
	}
	if !vllmver.AtLeast(s.version, vllmver.UseActivation) {
		req.Task = "" // older versions ignore task
	}
	if req.Task != "" && req.Task != "classify" {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest,
			fmt.Sprintf("task %q is not supported by the simulated reward model (want classify)", req.Task), "task"))
		return
	}
	var text, response string
	switch {
	case req.Messages != nil:
		// With the generation prompt the reward is read after an empty
		// assistant turn.
		text = render(req.Messages, addGen)
		response = lastAssistant(text)
	case req.Input != nil:
		text = *req.Input
		response = lastAssistant(text)
	default:
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, "either messages or input is required", "messages"))
		return
	}
	tokens := tokenCount(text)
	if tokens > s.opts.MaxModelLen {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens in the input. Please reduce the length of the input.",
			s.opts.MaxModelLen, tokens), "messages"))
		return
	}
	ft, ok := s.rewardCall(w, r, EndpointPooling)
	if !ok {
		return
	}
	scores, ok := s.score(w, r, []string{response}, tokens, s.activated(req.activation))
	if !ok {
		return
	}
	type item struct {
		Index  int       `json:"index"`
		Object string    `json:"object"`
		Data   []float64 `json:"data"`
	}
	s.respond(w, http.StatusOK, map[string]any{
		"id": "pool-" + strconv.FormatInt(time.Now().UnixNano(), 36), "object": "list",
		"created": time.Now().Unix(), "model": s.opts.RewardModel,
		"data":  []item{{Index: 0, Object: "pooling", Data: scores}},
		"usage": poolingUsage{PromptTokens: tokens, TotalTokens: tokens},
	}, ft)
}
