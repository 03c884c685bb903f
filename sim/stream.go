package sim

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// chunkDelta is the delta of a streamed choice: the role first, then
// content; the final chunk of a choice has an empty delta.
type chunkDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chunkChoice struct {
	Index        int             `json:"index"`
	Delta        chunkDelta      `json:"delta"`
	Logprobs     *choiceLogprobs `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

// chatChunk is one event of a streamed chat completion. Usage is absent
// unless stream_options.include_usage was set; then it is null on every
// chunk but the last, which has no choices.
type chatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   any           `json:"usage,omitempty"`
}

// chatStream writes a streamed chat completion as its tokens are decoded.
type chatStream struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	meta         chatMeta
	model        string
	includeUsage bool
	choices      []choice
	sent         []int // tokens sent, per choice
	finished     []bool
	started      bool // the role chunks are out
	sentTokens   int
}

// streamChat answers a chat request with server-sent events as vLLM and
// OpenAI send them: a role chunk per choice when the first token is
// decoded, content deltas as the scheduler decodes tokens (choices
// interleaved by index), a final chunk per choice with its finish_reason,
// with include_usage a chunk without choices holding the usage, then
// [DONE]. The X-Sim timing headers come as trailers. A drop fault cuts the
// connection halfway through the tokens; a malformed fault sends half a
// chunk there and ends the body.
func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, j *job, choices []choice, meta chatMeta, includeUsage bool, ft fault) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Trailer", "X-Sim-Queue-Seconds, X-Sim-Seconds")
	w.WriteHeader(http.StatusOK)
	cs := &chatStream{w: w, rc: http.NewResponseController(w), meta: meta, model: s.opts.Model,
		includeUsage: includeUsage, choices: choices, sent: make([]int, len(choices)), finished: make([]bool, len(choices))}
	_ = cs.rc.Flush()
	cut := -1 // tokens after which a drop or malformed fault strikes
	if ft.kind == FaultDrop || ft.kind == FaultMalformed {
		cut = meta.completion / 2
	}
	var produced []int
	for done := false; !done; {
		select {
		case <-j.progress:
		case <-j.done:
			done = true
		case <-r.Context().Done():
			s.sched.cancel(j)
			return
		}
		if done && j.err != nil {
			cs.data(vllmError(http.StatusServiceUnavailable, "the simulated server is shutting down", ""))
			cs.data([]byte("[DONE]"))
			return
		}
		produced = s.sched.produced(j, produced)
		if err := cs.advance(produced); err != nil {
			s.sched.cancel(j)
			return
		}
		if cut >= 0 && cs.sentTokens >= cut {
			s.sched.cancel(j)
			cs.strike(ft.kind)
			return
		}
	}
	if cs.includeUsage {
		u := usage{PromptTokens: meta.promptTokens, CompletionTokens: meta.completion, TotalTokens: meta.promptTokens + meta.completion}
		if cs.send(nil, u) != nil {
			return
		}
	}
	if cs.data([]byte("[DONE]")) != nil {
		return
	}
	s.countCompletion(meta.completion)
	w.Header().Set("X-Sim-Queue-Seconds", strconv.FormatFloat(j.QueueSeconds(), 'f', 6, 64))
	w.Header().Set("X-Sim-Seconds", strconv.FormatFloat(j.Seconds(), 'f', 6, 64))
}

// advance sends what was decoded since the last call: produced holds the
// tokens decoded so far of each choice.
func (cs *chatStream) advance(produced []int) error {
	if !cs.started {
		if !anyPositive(produced) {
			return nil
		}
		empty := ""
		for i := range cs.choices {
			if err := cs.send([]chunkChoice{{Index: i, Delta: chunkDelta{Role: "assistant", Content: &empty}}}, nil); err != nil {
				return err
			}
		}
		cs.started = true
	}
	for i, c := range cs.choices {
		if cs.finished[i] || produced[i] <= cs.sent[i] {
			continue
		}
		piece := tokenSpan(c.Text, cs.sent[i], produced[i], c.Tokens)
		cc := chunkChoice{Index: i, Delta: chunkDelta{Content: &piece}}
		if cs.sent[i] == 0 {
			cc.Logprobs = c.Logprobs // a grade's: its only token
		}
		if err := cs.send([]chunkChoice{cc}, nil); err != nil {
			return err
		}
		cs.sentTokens += produced[i] - cs.sent[i]
		cs.sent[i] = produced[i]
		if produced[i] < c.Tokens {
			continue
		}
		finish := c.Finish
		if err := cs.send([]chunkChoice{{Index: i, FinishReason: &finish}}, nil); err != nil {
			return err
		}
		cs.finished[i] = true
	}
	return nil
}

func anyPositive(xs []int) bool {
	for _, x := range xs {
		if x > 0 {
			return true
		}
	}
	return false
}

// tokenSpan returns the text of tokens [from, to) of a text of total
// tokens of about four bytes each; the last token takes the rest.
func tokenSpan(text string, from, to, total int) string {
	a := min(4*from, len(text))
	if to >= total {
		return text[a:]
	}
	return text[a:max(a, min(4*to, len(text)))]
}

// send writes one chunk; u is the usage of the last chunk (nil: none).
func (cs *chatStream) send(choices []chunkChoice, u any) error {
	if choices == nil {
		choices = []chunkChoice{}
	}
	c := chatChunk{ID: cs.meta.id, Object: "chat.completion.chunk", Created: cs.meta.created, Model: cs.model, Choices: choices}
	if cs.includeUsage {
		c.Usage = json.RawMessage("null")
		if u != nil {
			c.Usage = u
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return cs.data(b)
}

// data writes one server-sent event and flushes it.
func (cs *chatStream) data(b []byte) error {
	if _, err := cs.w.Write(append(append([]byte("data: "), b...), '\n', '\n')); err != nil {
		return err
	}
	return cs.rc.Flush()
}

// strike applies a drop or malformed fault to the stream.
func (cs *chatStream) strike(k FaultKind) {
	empty := ""
	b, _ := json.Marshal(chatChunk{ID: cs.meta.id, Object: "chat.completion.chunk", Created: cs.meta.created,
		Model: cs.model, Choices: []chunkChoice{{Delta: chunkDelta{Content: &empty}}}})
	if k == FaultMalformed {
		_ = cs.data(malformed(b))
		return
	}
	_ = cs.rc.Flush()
	panic(http.ErrAbortHandler) // the server closes the connection mid-body
}
