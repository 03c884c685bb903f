package reward

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/internal/vllmver"
)

// MinVLLMVersion is the first vLLM version that honours "use_activation":
// older ones ignore it and apply a sigmoid to the rewards.
const MinVLLMVersion = vllmver.UseActivation

// allowOldHint says how to let an old or unknown vLLM server through.
const allowOldHint = "allow it anyway with --reward-allow-old-vllm (VLLMOptions.AllowOldServer)"

// Check asks every replica for its version (GET /version) and the models
// it serves (GET /v1/models), before any scoring, and fails at once, naming the replica's URL, when one cannot be
// reached or answers with an error other than 404. A replica older than
// MinVLLMVersion, or whose version cannot be told (GET /version answers 404
// or something that is not a version), is refused unless AllowOldServer is
// set, in which case it is let through with a warning. Pre-releases and
// development builds of 0.11.1 ("0.11.1rc2", "0.11.1.dev123+gabcdef") sort
// before 0.11.1, as PEP 440 orders them, and count as older: whether they
// have the field depends on the commit they were built from. A replica
// that lists its models but not the reward model named in the options is
// refused (one that does not list them is not).
func (s *VLLM) Check(ctx context.Context) error {
	var errs []error
	for _, u := range s.client.URLs() {
		if err := s.checkReplica(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkReplica checks the version of the replica at url and the models it
// serves, in one attempt each.
func (s *VLLM) checkReplica(ctx context.Context, url string) error {
	o := s.check
	o.URLs, o.MaxRetries, o.MaxInFlight = []string{url}, -1, 0
	c, err := httpx.New(o)
	if err != nil {
		return fmt.Errorf("reward: %w", err)
	}
	if err := s.checkVersion(ctx, c, url); err != nil {
		return err
	}
	return s.checkModel(ctx, c, url)
}

// checkModel refuses a replica that lists the models it serves without
// the reward model (vLLM would answer every scoring request with a 404).
func (s *VLLM) checkModel(ctx context.Context, c *httpx.Client, url string) error {
	if s.model == "" {
		return nil
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	_, err := c.GetJSON(ctx, "/v1/models", &list)
	var se *httpx.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		s.log.Debug("the vLLM reward server lists no models; the reward model is not checked", "server", url)
		return nil
	case err != nil:
		return fmt.Errorf("reward: asking the vLLM server for its models: %w", err)
	}
	var served []string
	for _, m := range list.Data {
		if m.ID == s.model {
			return nil
		}
		served = append(served, strconv.Quote(m.ID))
	}
	return fmt.Errorf("reward: vLLM server %s does not serve the reward model %q (it serves %s); "+
		"give --reward-model one of those, or --reward-url of the server that serves it",
		url, s.model, cmp.Or(strings.Join(served, ", "), "none"))
}

// checkVersion refuses a replica older than MinVLLMVersion, or whose
// version cannot be told, unless AllowOldServer is set.
func (s *VLLM) checkVersion(ctx context.Context, c *httpx.Client, url string) error {
	var body json.RawMessage
	_, err := c.GetJSON(ctx, "/version", &body)
	var se *httpx.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return s.unknownVersion(url, "GET /version answered 404")
	case err != nil:
		return fmt.Errorf("reward: checking the vLLM server's version: %w", err)
	}
	v, err := decodeVersion(body)
	if err != nil {
		return s.unknownVersion(url, err.Error())
	}
	if vllmver.AtLeast(v, MinVLLMVersion) {
		s.log.Info("vLLM reward server checked", "server", url, "version", v.String())
		return nil
	}
	if s.allowOld {
		s.log.Warn("vLLM reward server older than "+MinVLLMVersion+" allowed: it ignores use_activation, so its scores may be sigmoid-squashed",
			"server", url, "version", v.String())
		return nil
	}
	return fmt.Errorf("reward: vLLM server %s runs version %s, older than %s: it ignores \"use_activation\" and would return "+
		"sigmoid-squashed scores (all exactly 1 in bf16 for good responses); upgrade it, or %s",
		url, v, MinVLLMVersion, allowOldHint)
}

// unknownVersion refuses, or with AllowOldServer warns about, a replica
// whose version cannot be told.
func (s *VLLM) unknownVersion(url, why string) error {
	if s.allowOld {
		s.log.Warn("vLLM reward server of unknown version allowed: if it is older than "+MinVLLMVersion+
			", it ignores use_activation and its scores may be sigmoid-squashed", "server", url, "reason", why)
		return nil
	}
	return fmt.Errorf("reward: vLLM server %s: cannot tell its version (%s), so cannot tell whether it honours "+
		"\"use_activation\" (vLLM %s or later); %s", url, why, MinVLLMVersion, allowOldHint)
}
