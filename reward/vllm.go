package reward

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
)

// The ways VLLM can ask vLLM for rewards.
const (
	// MethodClassify renders and tokenizes each conversation with POST
	// /tokenize, then scores all of them in one POST /classify.
	MethodClassify = "classify"
	// MethodPooling sends each conversation to POST /pooling, which renders
	// and scores it in one request.
	MethodPooling = "pooling"
)

// VLLMOptions configures a VLLM scorer.
type VLLMOptions struct {
	// Options locate the servers and set retries, timeouts and limits.
	// URLs are the base URLs of one or more replicas of the reward model's
	// server, e.g. http://localhost:8001. vLLM serves /tokenize, /classify
	// and /pooling at the root, so a trailing /v1 is removed. Name
	// defaults to "reward".
	httpx.Options
	// Model is the served model name; when empty the field is left out and
	// vLLM uses the model it serves.
	Model string
	// Method is MethodClassify (the default) or MethodPooling.
	Method string
	// TokenLevel is for token-level reward models served with the
	// token_classify task: the reward is the value at the last token.
	// It needs MethodPooling.
	TokenLevel bool
	// AllowOldServer lets Check pass, with a warning, a server older than
	// vLLM 0.11.1 or whose version it cannot tell. Such a server ignores
	// "use_activation" and may return sigmoid-squashed scores.
	AllowOldServer bool
}

// VLLM scores responses with a sequence-classification reward model served
// by vLLM's pooling runner (`vllm serve MODEL --runner pooling`). It is safe
// for concurrent use.
//
// Each response is appended to the conversation as an assistant turn and the
// whole conversation is rendered with the reward model's own chat template
// on the server. Scores are the model's raw outputs: requests carry
// "use_activation": false so that vLLM does not squash them with a sigmoid.
// vLLM versions that predate that field ignore it: Check refuses them, and
// when every score seen so far lies in [0,1] the scorer logs a warning once
// (see SigmoidSuspected).
type VLLM struct {
	client     *httpx.Client
	check      httpx.Options // for Check's one-replica clients
	model      string
	method     string
	tokenLevel bool
	allowOld   bool
	log        *slog.Logger

	mu      sync.Mutex
	outside bool // some score so far fell outside [0,1]
	warned  bool
	pooling bool // /classify refused token ids: score with /pooling
}

// NewVLLM returns a scorer for the vLLM server described by opts.
func NewVLLM(opts VLLMOptions) (*VLLM, error) {
	method := opts.Method
	if method == "" {
		method = MethodClassify
	}
	if method != MethodClassify && method != MethodPooling {
		return nil, fmt.Errorf("reward: unknown vLLM method %q (want %s or %s)", opts.Method, MethodClassify, MethodPooling)
	}
	if opts.TokenLevel && method != MethodPooling {
		return nil, errors.New("reward: token-level rewards need the pooling method")
	}
	urls := make([]string, len(opts.URLs))
	for i, u := range opts.URLs {
		urls[i] = VLLMRoot(u)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hopts := opts.Options
	hopts.Name = cmp.Or(hopts.Name, "reward")
	hopts.URLs = urls
	hopts.Logger = log
	c, err := httpx.New(hopts)
	if err != nil {
		return nil, fmt.Errorf("reward: %w", err)
	}
	return &VLLM{client: c, check: hopts, model: opts.Model, method: method, tokenLevel: opts.TokenLevel,
		allowOld: opts.AllowOldServer, log: log}, nil
}

// VLLMRoot returns the root URL of a vLLM server given its base URL with or
// without a trailing /v1 (and trailing slashes).
func VLLMRoot(u string) string {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	u = strings.TrimSuffix(u, "/v1")
	return strings.TrimRight(u, "/")
}

// The request bodies, in field order.
type (
	tokenizeRequest struct {
		Model               string        `json:"model,omitempty"`
		Messages            []tpo.Message `json:"messages"`
		AddGenerationPrompt bool          `json:"add_generation_prompt"`
	}
	classifyRequest struct {
		Model         string  `json:"model,omitempty"`
		Input         [][]int `json:"input"`
		UseActivation bool    `json:"use_activation"`
	}
	// Old vLLM versions defaulted add_generation_prompt to true on
	// /pooling, which shifts every score: it is always sent.
	poolingRequest struct {
		Model               string        `json:"model,omitempty"`
		Task                string        `json:"task"`
		UseActivation       bool          `json:"use_activation"`
		Messages            []tpo.Message `json:"messages"`
		AddGenerationPrompt bool          `json:"add_generation_prompt"`
	}
)

// Score implements tpo.Scorer.
func (s *VLLM) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	t := &tally{}
	if len(responses) == 0 {
		return t.scores([]float64{}), nil
	}
	ctx, span := startCall(ctx, s.client, s.model, len(responses))
	var scores []float64
	var err error
	if s.method == MethodPooling || s.usesPooling() {
		scores, err = s.scorePooling(ctx, t, messages, responses)
	} else {
		scores, err = s.scoreClassify(ctx, t, messages, responses)
	}
	t.end(span, err)
	if err != nil {
		return t.scores(nil), err
	}
	s.checkActivation(scores)
	return t.scores(scores), nil
}

// checkActivation records scores and warns once if every score so far lay
// in [0,1].
func (s *VLLM) checkActivation(scores []float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !SigmoidSuspected(scores) {
		s.outside = true
	}
	if s.outside || s.warned {
		return
	}
	s.warned = true
	s.log.Warn("every reward score so far lies between 0 and 1: the vLLM server may be applying a sigmoid "+
		"(vLLM versions before 0.11.1 ignore use_activation; in bf16 rewards above about +6 all come back as exactly 1); "+
		"raw reward model scores usually fall outside [0,1]",
		"servers", strings.Join(s.client.URLs(), ","), "scores", scores)
}

// usesPooling reports whether /classify refused token ids earlier.
func (s *VLLM) usesPooling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pooling
}

// switchToPooling makes this and later calls score with /pooling after se,
// a refusal of token ids by /classify; it logs the switch once and notes
// it in the call's tally.
func (s *VLLM) switchToPooling(t *tally, se *httpx.StatusError) {
	s.mu.Lock()
	first := !s.pooling
	s.pooling = true
	s.mu.Unlock()
	if first {
		s.log.Warn("the vLLM server refuses token ids on /classify; scoring with /pooling (one request per response) from now on",
			"server", se.Server, "status", se.Status)
	}
	t.note(fmt.Sprintf("reward: vLLM server %s refused token ids on /classify; scored with /pooling instead", se.Server))
}

// tokenIDsRefused reports whether err is a /classify refusal of token id
// lists, as some vLLM 0.11.2-0.12 servers answer (a 400 carrying
// pydantic's "Input should be a valid string").
func tokenIDsRefused(err error) (*httpx.StatusError, bool) {
	var se *httpx.StatusError
	if !errors.As(err, &se) || !inputRefused(se) {
		return nil, false
	}
	return se, strings.Contains(se.Message, "Input should be a valid string")
}

// scoreClassify tokenizes the conversations and classifies the token ids,
// or scores with /pooling if /classify refuses token ids.
func (s *VLLM) scoreClassify(ctx context.Context, t *tally, messages []tpo.Message, responses []string) ([]float64, error) {
	input, err := s.tokenizeAll(ctx, t, messages, responses)
	if err != nil {
		return nil, err
	}
	scores, err := s.classifyAll(ctx, t, input)
	if se, ok := tokenIDsRefused(err); ok {
		s.switchToPooling(t, se)
		return s.scorePooling(ctx, t, messages, responses)
	}
	if err == nil {
		for _, in := range input {
			t.read(len(in))
		}
	}
	return scores, err
}

// tokenizeAll renders and tokenizes each response's conversation.
func (s *VLLM) tokenizeAll(ctx context.Context, t *tally, messages []tpo.Message, responses []string) ([][]int, error) {
	toks := make([]tokenizeResponse, len(responses))
	g, gctx := errgroup.WithContext(ctx)
	for i, r := range responses {
		g.Go(func() error {
			req := tokenizeRequest{Model: s.model, Messages: withResponse(messages, r)}
			var raw json.RawMessage
			if err := t.post(gctx, s.client, "/tokenize", req, &raw); err != nil {
				return fmt.Errorf("reward: tokenizing response %d: %w", i, err)
			}
			tok, err := decodeTokenize(raw)
			if err != nil {
				return fmt.Errorf("reward: tokenizing response %d: %w", i, err)
			}
			if tok.MaxModelLen > 0 && len(tok.Tokens) > tok.MaxModelLen {
				return fmt.Errorf("reward: response %d: the conversation is %d tokens, more than the reward model's maximum of %d",
					i, len(tok.Tokens), tok.MaxModelLen)
			}
			toks[i] = tok
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	input := make([][]int, len(toks))
	for i, tok := range toks {
		input[i] = tok.Tokens
	}
	return input, nil
}

// classifyAll classifies input in one request or, when the server refuses
// the batch for what it holds, one input at a time. A refusal of token ids
// as such is returned as it is.
func (s *VLLM) classifyAll(ctx context.Context, t *tally, input [][]int) ([]float64, error) {
	scores, err := s.classify(ctx, t, input)
	var se *httpx.StatusError
	if _, refused := tokenIDsRefused(err); err == nil || refused {
		return scores, err
	}
	if len(input) == 1 {
		return nil, fmt.Errorf("reward: response 0: %w", err)
	}
	if !errors.As(err, &se) || !inputRefused(se) {
		return nil, fmt.Errorf("reward: scoring %d responses: %w", len(input), err)
	}
	// The batch was refused: score the inputs one at a time to find the one
	// at fault (or to get past a limit on the batch).
	s.log.Warn("batched /classify refused; scoring responses one at a time", "responses", len(input), "err", err)
	scores = make([]float64, len(input))
	for i := range input {
		one, err := s.classify(ctx, t, input[i:i+1])
		if err != nil {
			return nil, fmt.Errorf("reward: response %d: %w", i, err)
		}
		scores[i] = one[0]
	}
	return scores, nil
}

// inputRefused reports whether a server refused a request for what its
// input holds (too long, malformed) rather than for who sent it or when.
func inputRefused(se *httpx.StatusError) bool {
	return se.Status == http.StatusBadRequest || se.Status == http.StatusUnprocessableEntity
}

// classify sends one /classify request.
func (s *VLLM) classify(ctx context.Context, t *tally, input [][]int) ([]float64, error) {
	var raw json.RawMessage
	if err := t.post(ctx, s.client, "/classify", classifyRequest{Model: s.model, Input: input}, &raw); err != nil {
		return nil, err
	}
	return decodeClassify(raw, len(input))
}

func (s *VLLM) scorePooling(ctx context.Context, t *tally, messages []tpo.Message, responses []string) ([]float64, error) {
	task := "classify"
	if s.tokenLevel {
		task = "token_classify"
	}
	scores := make([]float64, len(responses))
	g, gctx := errgroup.WithContext(ctx)
	for i, r := range responses {
		g.Go(func() error {
			req := poolingRequest{Model: s.model, Task: task, Messages: withResponse(messages, r)}
			var raw json.RawMessage
			if err := t.post(gctx, s.client, "/pooling", req, &raw); err != nil {
				return fmt.Errorf("reward: response %d: %w", i, err)
			}
			v, err := decodePooling(raw, s.tokenLevel)
			if err != nil {
				return fmt.Errorf("reward: response %d: %w", i, err)
			}
			scores[i] = v
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return scores, nil
}
