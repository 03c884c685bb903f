package reward

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
)

// DefaultTEIBatchSize is TEI's default --max-client-batch-size.
const DefaultTEIBatchSize = 32

// TEIOptions configures a TEI scorer.
type TEIOptions struct {
	// Options locate the servers and set retries, timeouts and limits.
	// URLs are the base URLs of one or more replicas of the
	// text-embeddings-inference server, e.g. http://localhost:8080. Name
	// defaults to "reward".
	httpx.Options
	// LabelName picks the label whose score is the reward, for models with
	// more than one label. By default a single-label model's only score is
	// used, and a multi-label model's LABEL_0.
	LabelName string
	// BatchSize is the most pairs sent in one request (default 32, TEI's
	// default --max-client-batch-size). Check lowers it to the servers'
	// max_client_batch_size; when a server refuses a batch as too large,
	// the scorer lowers it to the maximum the server names (or halves it)
	// and tries again.
	BatchSize int
	// Truncate scores a pair longer than the model's input limit
	// truncated, on purpose: it is first sent with "truncate": false and,
	// once refused as too long, again with "truncate": true, and the step's
	// notes record it. Without it such a pair is an error.
	Truncate bool
	// Prompt renders the conversation as the first text of each pair
	// (default FlattenPrompt).
	Prompt func(messages []tpo.Message) string
}

// TEI scores responses with an encoder classifier reward model (such as
// OpenAssistant/reward-model-deberta-v3-large-v2) served by Hugging Face's
// text-embeddings-inference. It sends (prompt, response) pairs to POST
// /predict with "raw_scores": true, so scores are the model's raw logits,
// and "truncate" always explicit (TEI 1.9 on truncates silently when it is
// absent). The prompt is the conversation flattened to text (see
// FlattenPrompt). It is safe for concurrent use.
type TEI struct {
	client   *httpx.Client
	check    httpx.Options // for Check's one-replica clients
	label    string
	prompt   func([]tpo.Message) string
	truncate bool
	log      *slog.Logger

	mu    sync.Mutex
	batch int // current batch size; shrinks when refused
}

// NewTEI returns a scorer for the TEI server described by opts.
func NewTEI(opts TEIOptions) (*TEI, error) {
	if opts.BatchSize < 0 {
		return nil, fmt.Errorf("reward: negative TEI batch size %d", opts.BatchSize)
	}
	batch := opts.BatchSize
	if batch == 0 {
		batch = DefaultTEIBatchSize
	}
	prompt := opts.Prompt
	if prompt == nil {
		prompt = FlattenPrompt
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hopts := opts.Options
	hopts.Name = cmp.Or(hopts.Name, "reward")
	hopts.URLs = opts.URLs
	hopts.Logger = log
	c, err := httpx.New(hopts)
	if err != nil {
		return nil, fmt.Errorf("reward: %w", err)
	}
	return &TEI{client: c, check: hopts, label: opts.LabelName, prompt: prompt, truncate: opts.Truncate,
		log: log, batch: batch}, nil
}

type predictRequest struct {
	Inputs    [][2]string `json:"inputs"`
	RawScores bool        `json:"raw_scores"`
	Truncate  bool        `json:"truncate"`
}

// errShrunk says a batch was refused as too large and the batch size
// lowered: the caller sends a smaller one.
var errShrunk = errors.New("batch size lowered")

// Score implements tpo.Scorer. Batches are sent one after another.
func (s *TEI) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	t := &tally{}
	if len(responses) == 0 {
		return t.scores([]float64{}), nil
	}
	ctx, span := startCall(ctx, s.client, "", len(responses))
	scores, err := s.score(ctx, t, messages, responses)
	t.end(span, err)
	return t.scores(scores), err
}

// score scores the responses, adding what it costs to t.
func (s *TEI) score(ctx context.Context, t *tally, messages []tpo.Message, responses []string) ([]float64, error) {
	prompt := s.prompt(messages)
	pairs := make([][2]string, len(responses))
	for i, r := range responses {
		pairs[i] = [2]string{prompt, r}
	}
	scores := make([]float64, 0, len(pairs))
	for start := 0; start < len(pairs); {
		size := min(s.batchSize(), len(pairs)-start)
		got, err := s.scoreBatch(ctx, t, pairs[start:start+size], start)
		if errors.Is(err, errShrunk) {
			continue
		}
		if err != nil {
			return nil, err
		}
		scores = append(scores, got...)
		start += size
	}
	return scores, nil
}

// scoreBatch scores the pairs of one batch, whose first is response start.
// A batch refused as too large lowers the batch size and returns errShrunk;
// one refused for what a pair holds (too long, malformed) is scored one
// pair at a time, to find the pair at fault.
func (s *TEI) scoreBatch(ctx context.Context, t *tally, chunk [][2]string, start int) ([]float64, error) {
	got, err := s.predict(ctx, t, chunk, false)
	var se *httpx.StatusError
	switch {
	case err == nil:
		return got, nil
	case len(chunk) == 1:
		v, err := s.retryOne(ctx, t, chunk[0], start, err)
		return []float64{v}, err
	case !errors.As(err, &se):
		return nil, fmt.Errorf("reward: responses %d to %d: %w", start, start+len(chunk)-1, err)
	}
	ref := parseTEIRefusal(se.Message)
	switch {
	case ref.kind == refusedBatch:
		s.shrink(len(chunk), ref.limit, se)
		return nil, errShrunk
	case ref.kind == refusedTooLong || inputRefused(se):
		return s.scoreEach(ctx, t, chunk, start)
	case se.Status == http.StatusRequestEntityTooLarge: // the body limit
		s.shrink(len(chunk), 0, se)
		return nil, errShrunk
	}
	return nil, fmt.Errorf("reward: responses %d to %d: %w", start, start+len(chunk)-1, err)
}

// scoreEach scores the pairs of chunk one at a time.
func (s *TEI) scoreEach(ctx context.Context, t *tally, chunk [][2]string, start int) ([]float64, error) {
	scores := make([]float64, len(chunk))
	for i, p := range chunk {
		got, err := s.predict(ctx, t, [][2]string{p}, false)
		if err == nil {
			scores[i] = got[0]
			continue
		}
		if scores[i], err = s.retryOne(ctx, t, p, start+i, err); err != nil {
			return nil, err
		}
	}
	return scores, nil
}

// retryOne handles the refusal err of the single pair p, response i: a
// pair too long for the model is sent again truncated if the scorer may
// truncate, and is an error naming the limit otherwise.
func (s *TEI) retryOne(ctx context.Context, t *tally, p [2]string, i int, err error) (float64, error) {
	var se *httpx.StatusError
	if !errors.As(err, &se) {
		return 0, fmt.Errorf("reward: response %d: %w", i, err)
	}
	ref := parseTEIRefusal(se.Message)
	switch {
	case ref.kind != refusedTooLong && se.Status == http.StatusRequestEntityTooLarge:
		return 0, fmt.Errorf("reward: response %d: the request is larger than the TEI server accepts (its --payload-limit): %w", i, err)
	case ref.kind != refusedTooLong:
		return 0, fmt.Errorf("reward: response %d: %w", i, err)
	case !s.truncate:
		return 0, fmt.Errorf("reward: response %d is too long for the reward model (%s); TEI was told not to truncate it: "+
			"shorten it, or score it truncated with --reward-truncate (TEIOptions.Truncate): %w", i, ref, err)
	}
	got, err := s.predict(ctx, t, [][2]string{p}, true)
	if err != nil {
		return 0, fmt.Errorf("reward: response %d, sent truncated: %w", i, err)
	}
	note := fmt.Sprintf("reward: TEI scored a response truncated to the reward model's input limit (%s): %q", ref, head(p[1], 40))
	s.log.Info("TEI scored an over-long response truncated", "response", i, "server", se.Server, "limit", ref.String())
	t.note(note)
	return got[0], nil
}

// head returns the first n runes of s, with an ellipsis if it is longer.
func head(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i] + "…"
		}
		n--
	}
	return s
}

func (s *TEI) batchSize() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batch
}

// shrink lowers the batch size after a batch of size refused was refused
// by se: to limit, the maximum the server named, if it is smaller, else to
// half.
func (s *TEI) shrink(refused, limit int, se *httpx.StatusError) {
	n := refused / 2
	if limit > 0 && limit < refused {
		n = limit
	}
	n = max(1, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < s.batch {
		s.batch = n
		s.log.Warn("TEI refused the batch size; lowering it", "server", se.Server, "status", se.Status,
			"refused", refused, "batch_size", n, "error", se.Message)
	}
}

func (s *TEI) predict(ctx context.Context, t *tally, pairs [][2]string, truncate bool) ([]float64, error) {
	var raw json.RawMessage
	req := predictRequest{Inputs: pairs, RawScores: true, Truncate: truncate}
	if err := t.post(ctx, s.client, "/predict", req, &raw); err != nil {
		return nil, err
	}
	return decodePredict(raw, len(pairs), s.label)
}
