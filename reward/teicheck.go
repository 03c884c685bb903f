package reward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/tpoproject/tpo/httpx"
)

// Check reads every replica's GET /info, before any scoring, in one attempt
// each. It fails at once, naming the replica's URL, when one cannot be
// reached, is not a text-embeddings-inference server or serves an
// embedding model rather than a classifier. It lowers the batch size to the
// smallest max_client_batch_size of the replicas, and logs when it does.
func (s *TEI) Check(ctx context.Context) error {
	var errs []error
	for _, u := range s.client.URLs() {
		info, err := s.info(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("TEI reward server checked", "server", u, "version", info.Version, "model", info.ModelID,
			"max_input_length", info.MaxInputLength, "max_client_batch_size", info.MaxClientBatchSize, "auto_truncate", info.AutoTruncate)
		s.capBatch(u, info.MaxClientBatchSize)
	}
	return errors.Join(errs...)
}

// info gets and reads GET /info from the replica at url.
func (s *TEI) info(ctx context.Context, url string) (teiInfo, error) {
	o := s.check
	o.URLs, o.MaxRetries, o.MaxInFlight = []string{url}, -1, 0
	c, err := httpx.New(o)
	if err != nil {
		return teiInfo{}, fmt.Errorf("reward: %w", err)
	}
	var body json.RawMessage
	_, err = c.GetJSON(ctx, "/info", &body)
	var se *httpx.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return teiInfo{}, fmt.Errorf("reward: %s is not a text-embeddings-inference server (it has no GET /info): %w", url, err)
	case err != nil:
		return teiInfo{}, fmt.Errorf("reward: checking the TEI server: %w", err)
	}
	info, err := decodeTEIInfo(body)
	if err != nil {
		return teiInfo{}, fmt.Errorf("reward: TEI server %s: %w", url, err)
	}
	return info, nil
}

// capBatch lowers the batch size to limit, the max_client_batch_size of
// the replica at url.
func (s *TEI) capBatch(url string, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit < s.batch {
		s.log.Info("lowering the TEI batch size to the server's max_client_batch_size", "server", url,
			"configured", s.batch, "max_client_batch_size", limit)
		s.batch = limit
	}
}

// teiInfo is what Check reads of TEI's GET /info.
type teiInfo struct {
	ModelID            string
	ModelType          string // "classifier", "reranker" or "embedding"
	MaxInputLength     int
	MaxClientBatchSize int
	AutoTruncate       bool
	Version            string
}

// decodeTEIInfo reads a GET /info body. It fails when the body lacks what
// every TEI version sends (model_id, model_type, max_client_batch_size,
// version) or when the model is not a classifier or reranker, which
// /predict needs.
func decodeTEIInfo(body []byte) (teiInfo, error) {
	var r struct {
		ModelID            *string                    `json:"model_id"`
		ModelType          map[string]json.RawMessage `json:"model_type"`
		MaxInputLength     int                        `json:"max_input_length"`
		MaxClientBatchSize *int                       `json:"max_client_batch_size"`
		AutoTruncate       bool                       `json:"auto_truncate"`
		Version            *string                    `json:"version"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return teiInfo{}, fmt.Errorf("GET /info answered %s: not a text-embeddings-inference server", snippet(body))
	}
	if r.ModelID == nil || r.Version == nil || r.MaxClientBatchSize == nil || len(r.ModelType) != 1 {
		return teiInfo{}, fmt.Errorf("GET /info answered %s, without model_id, model_type, max_client_batch_size and version: "+
			"not a text-embeddings-inference server", snippet(body))
	}
	if *r.MaxClientBatchSize < 1 {
		return teiInfo{}, fmt.Errorf("GET /info: max_client_batch_size is %d", *r.MaxClientBatchSize)
	}
	types := slices.Collect(maps.Keys(r.ModelType))
	info := teiInfo{ModelID: *r.ModelID, ModelType: types[0], MaxInputLength: r.MaxInputLength,
		MaxClientBatchSize: *r.MaxClientBatchSize, AutoTruncate: r.AutoTruncate, Version: *r.Version}
	if info.ModelType != "classifier" && info.ModelType != "reranker" {
		return teiInfo{}, fmt.Errorf("it serves %s, a model of type %q: /predict needs a sequence-classification (reward) model",
			info.ModelID, strings.ToLower(info.ModelType))
	}
	return info, nil
}
