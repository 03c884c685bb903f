package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// ModeOff is the value of the "mode" override that sends the request
// straight to the policy server, unoptimized.
const ModeOff = "off"

// Overrides are the per-request TPO settings a client may send in the
// "tpo" object of a chat completion request (the official clients send it
// through extra_body). Absent fields keep the server's settings.
type Overrides struct {
	// Mode is tpo, revision, bon or off (pass the request through).
	Mode string `json:"mode,omitempty"`
	// Width is N, Depth is D.
	Width *int `json:"width,omitempty"`
	Depth *int `json:"depth,omitempty"`
	// Reward names one of the server's scorers.
	Reward string `json:"reward,omitempty"`
	// The sampling settings of the loss and gradient calls.
	CritiqueTemperature *float64 `json:"critique_temperature,omitempty"`
	CritiqueTopP        *float64 `json:"critique_top_p,omitempty"`
	CritiqueMaxTokens   *int     `json:"critique_max_tokens,omitempty"`
	// MaxTextChars bounds each text inserted into a prompt, in bytes.
	MaxTextChars *int `json:"max_text_chars,omitempty"`
	// Stopping rules (see tpo.Config): stop when the best score has not
	// improved for Patience rounds, once it reaches TargetScore, or before
	// a round that would take the request's policy tokens past
	// MaxItemTokens.
	Patience      *int     `json:"patience,omitempty"`
	TargetScore   *float64 `json:"target_score,omitempty"`
	MaxItemTokens *int     `json:"max_item_tokens,omitempty"`
	// DeadlineMS is when the answer is due, in milliseconds from the
	// request's arrival: the best answer so far is returned then, and the
	// calls in flight are cancelled.
	DeadlineMS *int64 `json:"deadline_ms,omitempty"`
}

// Limits bound what a request may ask for.
type Limits struct {
	MaxWidth int // largest width override (default 32)
	MaxDepth int // largest depth override (default 10)
	// MaxN is the largest n (default 16), also of pass-through requests.
	MaxN int
	// MaxTokens is the largest max_tokens or max_completion_tokens (default
	// DefaultMaxTokensCap), also of pass-through requests;
	// MaxCritiqueTokens the largest tpo.critique_max_tokens (default
	// DefaultCritiqueMaxTokensCap).
	MaxTokens         int
	MaxCritiqueTokens int
}

// Defaults of the Limits on tokens.
const (
	DefaultMaxTokensCap         = 16384
	DefaultCritiqueMaxTokensCap = 8192
)

func (l Limits) withDefaults() Limits {
	if l.MaxWidth <= 0 {
		l.MaxWidth = 32
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 10
	}
	if l.MaxN <= 0 {
		l.MaxN = 16
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = DefaultMaxTokensCap
	}
	if l.MaxCritiqueTokens <= 0 {
		l.MaxCritiqueTokens = DefaultCritiqueMaxTokensCap
	}
	return l
}

// chatRequest is what the server reads of a chat completion request. The
// raw body is kept for pass-through.
type chatRequest struct {
	Model               string         `json:"model"`
	Messages            []inMessage    `json:"messages"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	N                   *int           `json:"n"`
	Temperature         *float64       `json:"temperature"`
	TopP                *float64       `json:"top_p"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	Seed                *int64         `json:"seed"`
	// Tools the model may call: sent with the initial samples.
	Tools             json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	// Fields TPO cannot honour; their presence is checked, not their value.
	Functions      json.RawMessage `json:"functions"`
	FunctionCall   json.RawMessage `json:"function_call"`
	ResponseFormat json.RawMessage `json:"response_format"`
	Logprobs       *bool           `json:"logprobs"`
	TopLogprobs    *int            `json:"top_logprobs"`
	Stop           json.RawMessage `json:"stop"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type inMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
	Name       string          `json:"name"`
}

type contentPart struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// plan is a validated request: what to do and with which settings.
type plan struct {
	// Model is the request's model, as answers echo it; Upstream the
	// policy model it names (Model without its preset).
	Model        string
	Upstream     string
	Stream       bool
	IncludeUsage bool
	// Off is true for pass-through requests; Body is then the request
	// without its "tpo" object. The fields below are unset.
	Off  bool
	Body []byte

	// Item is the conversation as the optimization's calls see it: text,
	// with tool calls and their results written out (see
	// renderConversation).
	Item tpo.Item
	// Conversation is the conversation as the client sent it; with Tools,
	// the initial samples are asked for with it and them.
	Conversation []openai.Message
	Tools        toolSpec
	Config       tpo.Config
	Reward       string // scorer name
	N            int
	// Deadline is when the answer is due, from the request's arrival
	// (0: none).
	Deadline time.Duration
}

// toolSpec is what a request says of tools: the tools (JSON, in the chat
// completions format) and the choice, sent as they are.
type toolSpec struct {
	Tools             json.RawMessage
	Choice            json.RawMessage
	ParallelToolCalls *bool
}

// any reports whether the request offers the model tools.
func (t toolSpec) any() bool { return len(t.Tools) > 0 }

// settings are what requests are checked against and what they default
// to.
type settings struct {
	Config        tpo.Config
	DefaultReward string
	Scorers       map[string]tpo.Scorer
	Limits        Limits
	Deadline      time.Duration
}

func (s *Server) settings() settings {
	return settings{Config: s.opts.Config, DefaultReward: s.opts.DefaultReward, Scorers: s.opts.Scorers,
		Limits: s.opts.Limits, Deadline: s.opts.Deadline}
}

// samplingReq is what a request asks of the sampling of its answer.
type samplingReq struct {
	Temperature *float64
	TopP        *float64
	MaxTokens   *int
	Seed        *int64
}

// parseRequest reads a chat completion request body and checks it against
// the server's defaults, limits and scorers. It does not touch the network.
func parseRequest(body []byte, st settings) (*plan, *apiError) {
	st.Limits = st.Limits.withDefaults()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, badRequest("", "the request body is not a JSON object: %s", jsonErrText(err))
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, jsonFieldError("", err)
	}
	ov, aerr := decodeOverrides(top["tpo"])
	if aerr != nil {
		return nil, aerr
	}
	p := &plan{Model: req.Model, Stream: req.Stream}
	if p.Upstream, ov, aerr = resolveModel(req.Model, ov, st.Limits); aerr != nil {
		return nil, aerr
	}
	if req.StreamOptions != nil {
		if !req.Stream {
			return nil, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.IncludeUsage = req.StreamOptions.IncludeUsage
	}
	if len(req.Messages) == 0 {
		return nil, badRequest("messages", "messages must be a non-empty array")
	}
	if aerr := checkCounts(&req, st.Limits); aerr != nil {
		return nil, aerr
	}
	p.N = 1
	if req.N != nil {
		p.N = *req.N
	}
	if ov.Mode == ModeOff {
		return passThroughPlan(p, top)
	}
	if aerr := refuseUnsupported(&req); aerr != nil {
		return nil, aerr
	}
	p.Tools = toolSpec{Tools: req.Tools, Choice: req.ToolChoice, ParallelToolCalls: req.ParallelToolCalls}
	if aerr := checkTools(p.Tools, "tools", "tool_choice"); aerr != nil {
		return nil, aerr
	}
	if p.Conversation, aerr = convertMessages(req.Messages); aerr != nil {
		return nil, aerr
	}
	samp := samplingReq{Temperature: req.Temperature, TopP: req.TopP, MaxTokens: req.MaxTokens, Seed: req.Seed}
	if req.MaxCompletionTokens != nil {
		// Like vLLM: max_completion_tokens wins when both are given.
		samp.MaxTokens = req.MaxCompletionTokens
	}
	if aerr := completePlan(p, st, ov, samp, "messages"); aerr != nil {
		return nil, aerr
	}
	return p, nil
}

// passThroughPlan makes p the plan of a request relayed unchanged: its
// body without the "tpo" object, naming the upstream model when the
// request named a preset.
func passThroughPlan(p *plan, top map[string]json.RawMessage) (*plan, *apiError) {
	delete(top, "tpo")
	if p.Upstream != p.Model {
		m, _ := json.Marshal(p.Upstream)
		top["model"] = m
	}
	b, err := json.Marshal(top)
	if err != nil {
		return nil, badRequest("", "re-encoding the request: %v", err)
	}
	p.Off, p.Body = true, b
	return p, nil
}

// completePlan fills in the settings of an optimized request whose
// conversation is set: the rendered conversation, the configuration, the
// deadline and the reward. param names the conversation in errors.
func completePlan(p *plan, st settings, ov Overrides, samp samplingReq, param string) *apiError {
	st.Limits = st.Limits.withDefaults()
	p.Item = tpo.Item{Messages: renderConversation(p.Conversation)}
	if err := p.Item.Validate(); err != nil {
		return badRequest(param, "%v", err)
	}
	cfg, aerr := applyOverrides(st.Config, ov, st.Limits)
	if aerr != nil {
		return aerr
	}
	if aerr := applySampling(&cfg, samp); aerr != nil {
		return aerr
	}
	p.Config = cfg
	p.Deadline = st.Deadline
	if ov.DeadlineMS != nil {
		if *ov.DeadlineMS < 1 {
			return badRequest("tpo.deadline_ms", "tpo.deadline_ms must be at least 1, got %d", *ov.DeadlineMS)
		}
		d := time.Duration(*ov.DeadlineMS) * time.Millisecond
		if st.Deadline > 0 && d > st.Deadline {
			return badRequest("tpo.deadline_ms", "tpo.deadline_ms must be at most this server's deadline, %d", st.Deadline.Milliseconds())
		}
		p.Deadline = d
	}
	p.Reward = st.DefaultReward
	if ov.Reward != "" {
		p.Reward = ov.Reward
	}
	if _, ok := st.Scorers[p.Reward]; !ok {
		return badRequest("tpo.reward", "unknown reward %q (this server has: %s)", p.Reward, strings.Join(sortedKeys(st.Scorers), ", "))
	}
	return nil
}

// decodeOverrides reads a request's "tpo" object.
func decodeOverrides(raw json.RawMessage) (Overrides, *apiError) {
	var ov Overrides
	if isNull(raw) {
		return ov, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ov); err != nil {
		return ov, jsonFieldError("tpo", err)
	}
	return ov, nil
}

// resolveModel reads a request's model: the upstream model it names, and
// the settings of its preset under the request's "tpo" object.
func resolveModel(model string, ov Overrides, lim Limits) (string, Overrides, *apiError) {
	pr, upstream, ok, err := splitPreset(model)
	if err != nil {
		return "", ov, badRequest("model", "%v", err)
	}
	if !ok {
		return model, ov, nil
	}
	if pr.Width != nil && (*pr.Width < 1 || *pr.Width > lim.MaxWidth) {
		return "", ov, badRequest("model", "model %q: the preset's width (-n) must be between 1 and %d, got %d", model, lim.MaxWidth, *pr.Width)
	}
	if pr.Depth != nil && *pr.Depth > lim.MaxDepth {
		return "", ov, badRequest("model", "model %q: the preset's depth (-d) must be at most %d, got %d", model, lim.MaxDepth, *pr.Depth)
	}
	return upstream, pr.under(ov), nil
}

// refuseUnsupported refuses the features the optimizer cannot honour
// rather than ignoring them.
func refuseUnsupported(req *chatRequest) *apiError {
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"functions", req.Functions}, {"function_call", req.FunctionCall}, {"stop", req.Stop}} {
		if isNull(f.raw) {
			continue
		}
		if f.name == "stop" {
			return badRequest(f.name, "stop is not supported with TPO; send \"tpo\": {\"mode\": \"off\"} to pass the request through")
		}
		return badRequest(f.name, "%s (the legacy form of tools) is not supported with TPO: send tools instead, or \"tpo\": {\"mode\": \"off\"} to pass the request through", f.name)
	}
	if !isNull(req.ResponseFormat) {
		var rf struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(req.ResponseFormat, &rf); err != nil || rf.Type != "text" {
			return badRequest("response_format", "response_format other than text is not supported with TPO; send \"tpo\": {\"mode\": \"off\"} to pass the request through")
		}
	}
	if req.Logprobs != nil && *req.Logprobs || req.TopLogprobs != nil {
		return badRequest("logprobs", "logprobs are not supported with TPO (the answer is not one sample)")
	}
	return nil
}

// checkCounts checks the request's n and length limits against the
// server's limits, whether the request is optimized or passed through.
func checkCounts(req *chatRequest, lim Limits) *apiError {
	if req.N != nil && (*req.N < 1 || *req.N > lim.MaxN) {
		return badRequest("n", "n must be between 1 and %d, got %d", lim.MaxN, *req.N)
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		if f.v != nil && (*f.v < 1 || *f.v > lim.MaxTokens) {
			return badRequest(f.name, "%s must be between 1 and %d, got %d", f.name, lim.MaxTokens, *f.v)
		}
	}
	return nil
}

// convertMessages reads the request's messages: text content (parts
// joined with newlines; other parts are refused), the tool calls of
// assistant messages and the results of tool messages.
func convertMessages(in []inMessage) ([]openai.Message, *apiError) {
	out := make([]openai.Message, 0, len(in))
	for i, m := range in {
		param := fmt.Sprintf("messages[%d]", i)
		role := m.Role
		switch role {
		case tpo.RoleSystem, tpo.RoleUser, tpo.RoleAssistant, roleTool:
		case "developer":
			role = tpo.RoleSystem
		case "function":
			return nil, badRequest(param+".role", "function messages (the legacy form of tool results) are not supported with TPO; send tool messages instead")
		case "":
			return nil, badRequest(param+".role", "%s has no role", param)
		default:
			return nil, badRequest(param+".role", "%s has unknown role %q", param, m.Role)
		}
		text, aerr := contentText(param+".content", m.Content)
		if aerr != nil {
			return nil, aerr
		}
		msg := openai.Message{Role: role, Content: text}
		if role == roleTool {
			if m.ToolCallID == "" {
				return nil, badRequest(param+".tool_call_id", "%s is a tool message without tool_call_id", param)
			}
			msg.ToolCallID = m.ToolCallID
		}
		if !isNull(m.ToolCalls) {
			if role != tpo.RoleAssistant {
				return nil, badRequest(param+".tool_calls", "%s: only assistant messages carry tool calls", param)
			}
			if msg.ToolCalls, aerr = readToolCalls(param+".tool_calls", m.ToolCalls); aerr != nil {
				return nil, aerr
			}
		}
		out = append(out, msg)
	}
	return out, nil
}

// contentText reads a message's content: a string, null, or an array of
// parts of which only text parts are accepted.
func contentText(param string, raw json.RawMessage) (string, *apiError) {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", badRequest(param, "%s: %s", param, jsonErrText(err))
		}
		return s, nil
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", badRequest(param, "%s: %s", param, jsonErrText(err))
		}
		var texts []string
		for j, pr := range parts {
			pp := fmt.Sprintf("%s[%d]", param, j)
			var part contentPart
			if err := json.Unmarshal(pr, &part); err != nil {
				return "", badRequest(pp, "%s must be an object with a type: %s", pp, jsonErrText(err))
			}
			switch part.Type {
			case "text", "input_text", "output_text", "refusal":
				if part.Text == nil {
					if part.Type == "refusal" {
						var r struct {
							Refusal string `json:"refusal"`
						}
						_ = json.Unmarshal(pr, &r)
						texts = append(texts, r.Refusal)
						continue
					}
					return "", badRequest(pp, "%s is a text part without text", pp)
				}
				texts = append(texts, *part.Text)
			case "image_url", "input_image", "image":
				return "", badRequest(pp, "%s is an image: tpo serve optimizes text only; images are not supported (send \"tpo\": {\"mode\": \"off\"} to pass the request through)", pp)
			case "":
				return "", badRequest(pp, "%s has no type", pp)
			default:
				return "", badRequest(pp, "%s has type %q: only text content is supported with TPO", pp, part.Type)
			}
		}
		return strings.Join(texts, "\n"), nil
	}
	return "", badRequest(param, "%s must be a string or an array of content parts", param)
}

// applyOverrides applies a request's "tpo" object to the server's settings.
func applyOverrides(cfg tpo.Config, ov Overrides, lim Limits) (tpo.Config, *apiError) {
	if ov.Mode != "" {
		m, err := tpo.ParseMode(ov.Mode)
		if err != nil {
			return cfg, badRequest("tpo.mode", "unknown mode %q (want tpo, revision, bon or off)", ov.Mode)
		}
		cfg.Mode = m
	}
	if ov.Width != nil {
		if *ov.Width < 1 || *ov.Width > lim.MaxWidth {
			return cfg, badRequest("tpo.width", "tpo.width must be between 1 and %d, got %d", lim.MaxWidth, *ov.Width)
		}
		cfg.Width = *ov.Width
	}
	if ov.Depth != nil {
		if *ov.Depth < 0 || *ov.Depth > lim.MaxDepth {
			return cfg, badRequest("tpo.depth", "tpo.depth must be between 0 and %d, got %d", lim.MaxDepth, *ov.Depth)
		}
		cfg.Depth = *ov.Depth
	}
	if ov.CritiqueTemperature != nil {
		if !(*ov.CritiqueTemperature >= 0 && *ov.CritiqueTemperature <= 2) {
			return cfg, badRequest("tpo.critique_temperature", "tpo.critique_temperature must be in [0, 2], got %g", *ov.CritiqueTemperature)
		}
		cfg.Critique.Temperature = *ov.CritiqueTemperature
	}
	if ov.CritiqueTopP != nil {
		if !(*ov.CritiqueTopP > 0 && *ov.CritiqueTopP <= 1) {
			return cfg, badRequest("tpo.critique_top_p", "tpo.critique_top_p must be in (0, 1], got %g", *ov.CritiqueTopP)
		}
		cfg.Critique.TopP = *ov.CritiqueTopP
	}
	if ov.CritiqueMaxTokens != nil {
		if *ov.CritiqueMaxTokens < 1 || *ov.CritiqueMaxTokens > lim.MaxCritiqueTokens {
			return cfg, badRequest("tpo.critique_max_tokens", "tpo.critique_max_tokens must be between 1 and %d, got %d", lim.MaxCritiqueTokens, *ov.CritiqueMaxTokens)
		}
		cfg.Critique.MaxTokens = *ov.CritiqueMaxTokens
	}
	if ov.MaxTextChars != nil {
		if *ov.MaxTextChars < 0 {
			return cfg, badRequest("tpo.max_text_chars", "tpo.max_text_chars must not be negative, got %d", *ov.MaxTextChars)
		}
		cfg.MaxTextChars = *ov.MaxTextChars
	}
	return applyStops(cfg, ov)
}

// applyStops sets the stopping rules a request asks for.
func applyStops(cfg tpo.Config, ov Overrides) (tpo.Config, *apiError) {
	if ov.Patience != nil {
		if *ov.Patience < 0 {
			return cfg, badRequest("tpo.patience", "tpo.patience must not be negative, got %d", *ov.Patience)
		}
		cfg.Patience = *ov.Patience
	}
	if ov.TargetScore != nil {
		v := *ov.TargetScore
		cfg.TargetScore = &v
	}
	if ov.MaxItemTokens != nil {
		if *ov.MaxItemTokens < 0 {
			return cfg, badRequest("tpo.max_item_tokens", "tpo.max_item_tokens must not be negative, got %d", *ov.MaxItemTokens)
		}
		cfg.MaxItemTokens = *ov.MaxItemTokens
	}
	return cfg, nil
}

// applySampling lets the request's own sampling settings override those of
// the response samples (the initial samples and the updates).
func applySampling(cfg *tpo.Config, req samplingReq) *apiError {
	if t := req.Temperature; t != nil {
		if !(*t >= 0 && *t <= 2) {
			return badRequest("temperature", "temperature must be in [0, 2], got %g", *t)
		}
		cfg.Sampling.Temperature = *t
	}
	if t := req.TopP; t != nil {
		if !(*t > 0 && *t <= 1) {
			return badRequest("top_p", "top_p must be in (0, 1] with TPO, got %g", *t)
		}
		cfg.Sampling.TopP = *t
	}
	if req.MaxTokens != nil {
		cfg.Sampling.MaxTokens = *req.MaxTokens
	}
	if req.Seed != nil {
		s := *req.Seed
		cfg.Seed = &s
	}
	if err := cfg.Validate(); err != nil {
		return badRequest("", "invalid settings: %v", err)
	}
	return nil
}

// jsonFieldError turns a decoding error into a 400 naming the field.
func jsonFieldError(prefix string, err error) *apiError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		param := te.Field
		if prefix != "" {
			param = joinParam(prefix, te.Field)
		}
		return badRequest(param, "%s: want a JSON %s, got %s", orWhole(param), jsonKind(te.Type.Kind().String()), te.Value)
	}
	const unknown = "json: unknown field "
	if msg := err.Error(); strings.HasPrefix(msg, unknown) {
		name := strings.Trim(strings.TrimPrefix(msg, unknown), `"`)
		param := joinParam(prefix, name)
		return badRequest(param, "unknown setting %s (known: mode, width, depth, reward, critique_temperature, critique_top_p, critique_max_tokens, max_text_chars)", param)
	}
	return badRequest(prefix, "%s: %s", orWhole(prefix), jsonErrText(err))
}

func joinParam(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

func orWhole(param string) string {
	if param == "" {
		return "the request"
	}
	return param
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "number"
	case k == "ptr":
		return "value"
	case k == "slice":
		return "array"
	case k == "map", k == "struct":
		return "object"
	case k == "bool":
		return "boolean"
	}
	return k
}

func jsonErrText(err error) string {
	if err == nil {
		return "null"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
