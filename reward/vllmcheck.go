package reward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/internal/vllmver"
)

// MinVLLMVersion is the first vLLM version that honours "use_activation":
// older ones ignore it and apply a sigmoid to the rewards.
const MinVLLMVersion = vllmver.UseActivation

// allowOldHint says how to let an old or unknown vLLM server through.
const allowOldHint = "allow it anyway with --reward-allow-old-vllm (VLLMOptions.AllowOldServer)"

// Check asks every replica for its version (GET /version), before any
// scoring, and fails at once, naming the replica's URL, when one cannot be
// reached or answers with an error other than 404. A replica older than
// MinVLLMVersion, or whose version cannot be told (GET /version answers 404
// or something that is not a version), is refused unless AllowOldServer is
// set, in which case it is let through with a warning. Pre-releases and
// development builds of 0.11.1 ("0.11.1rc2", "0.11.1.dev123+gabcdef") sort
// before 0.11.1, as PEP 440 orders them, and count as older: whether they
// have the field depends on the commit they were built from.
func (s *VLLM) Check(ctx context.Context) error {
	var errs []error
	for _, u := range s.client.URLs() {
		if err := s.checkReplica(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkReplica checks the version of the replica at url, in one attempt.
func (s *VLLM) checkReplica(ctx context.Context, url string) error {
	o := s.check
	o.URLs, o.MaxRetries, o.MaxInFlight = []string{url}, -1, 0
	c, err := httpx.New(o)
	if err != nil {
		return fmt.Errorf("reward: %w", err)
	}
	var body json.RawMessage
	_, err = c.GetJSON(ctx, "/version", &body)
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
