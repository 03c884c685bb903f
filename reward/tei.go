package reward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
)

// DefaultTEIBatchSize is TEI's default --max-client-batch-size.
const DefaultTEIBatchSize = 32

// TEIOptions configures a TEI scorer.
type TEIOptions struct {
	// URLs are the base URLs of one or more replicas of the
	// text-embeddings-inference server, e.g. http://localhost:8080.
	URLs []string
	// LabelName picks the label whose score is the reward, for models with
	// more than one label. By default a single-label model's only score is
	// used, and a multi-label model's LABEL_0.
	LabelName string
	// BatchSize is the most pairs sent in one request (default 32, TEI's
	// default --max-client-batch-size). When the server answers 413, the
	// scorer halves it and tries again.
	BatchSize int
	// Prompt renders the conversation as the first text of each pair
	// (default FlattenPrompt).
	Prompt func(messages []tpo.Message) string

	APIKey      string
	MaxInFlight int           // requests in flight (0: unlimited)
	MaxRetries  int           // retries of transient failures (0: httpx's default, negative: none)
	Timeout     time.Duration // per attempt (0: httpx's default)
	BaseBackoff time.Duration // first retry backoff (0: httpx's default)
	MaxBackoff  time.Duration // backoff cap (0: httpx's default)
	HTTPClient  *http.Client
	Logger      *slog.Logger
}

// TEI scores responses with an encoder classifier reward model (such as
// OpenAssistant/reward-model-deberta-v3-large-v2) served by Hugging Face's
// text-embeddings-inference. It sends (prompt, response) pairs to POST
// /predict with "raw_scores": true, so scores are the model's raw logits.
// The prompt is the conversation flattened to text (see FlattenPrompt). It
// is safe for concurrent use.
type TEI struct {
	client *httpx.Client
	label  string
	prompt func([]tpo.Message) string
	log    *slog.Logger

	mu    sync.Mutex
	batch int // current batch size; shrinks on 413
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
	c, err := httpx.New(httpx.Options{
		Name:        "reward",
		URLs:        opts.URLs,
		APIKey:      opts.APIKey,
		Timeout:     opts.Timeout,
		MaxRetries:  opts.MaxRetries,
		BaseBackoff: opts.BaseBackoff,
		MaxBackoff:  opts.MaxBackoff,
		MaxInFlight: opts.MaxInFlight,
		HTTPClient:  opts.HTTPClient,
		Logger:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("reward: %w", err)
	}
	return &TEI{client: c, label: opts.LabelName, prompt: prompt, log: log, batch: batch}, nil
}

type predictRequest struct {
	Inputs    [][2]string `json:"inputs"`
	RawScores bool        `json:"raw_scores"`
}

// Score implements tpo.Scorer. Batches are sent one after another.
func (s *TEI) Score(ctx context.Context, messages []tpo.Message, responses []string) ([]float64, error) {
	if len(responses) == 0 {
		return []float64{}, nil
	}
	prompt := s.prompt(messages)
	pairs := make([][2]string, len(responses))
	for i, r := range responses {
		pairs[i] = [2]string{prompt, r}
	}
	scores := make([]float64, 0, len(pairs))
	for start := 0; start < len(pairs); {
		size := min(s.batchSize(), len(pairs)-start)
		chunk := pairs[start : start+size]
		got, err := s.predict(ctx, chunk)
		var se *httpx.StatusError
		switch {
		case err == nil:
			scores = append(scores, got...)
			start += size
			continue
		case errors.As(err, &se) && se.Status == http.StatusRequestEntityTooLarge && size > 1:
			s.shrink(size)
			continue
		case errors.As(err, &se) && inputRefused(se) && size > 1:
			// Find the pair at fault, scoring the rest on the way.
			for i := range chunk {
				one, err := s.predict(ctx, chunk[i:i+1])
				if err != nil {
					return nil, fmt.Errorf("reward: response %d: %w", start+i, err)
				}
				scores = append(scores, one[0])
			}
			start += size
			continue
		case size == 1:
			return nil, fmt.Errorf("reward: response %d: %w", start, err)
		default:
			return nil, fmt.Errorf("reward: responses %d to %d: %w", start, start+size-1, err)
		}
	}
	return scores, nil
}

func (s *TEI) batchSize() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batch
}

// shrink halves the batch size after a batch of size was refused.
func (s *TEI) shrink(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := max(1, size/2); n < s.batch {
		s.batch = n
		s.log.Warn("TEI refused the batch size; halving it", "refused", size, "batch_size", n)
	}
}

func (s *TEI) predict(ctx context.Context, pairs [][2]string) ([]float64, error) {
	var raw json.RawMessage
	if _, err := s.client.PostJSON(ctx, "/predict", predictRequest{Inputs: pairs, RawScores: true}, &raw); err != nil {
		return nil, err
	}
	return decodePredict(raw, len(pairs), s.label)
}
