package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// postTo posts a JSON body to path.
func (e *testEnv) postTo(t *testing.T, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// response is what tests read of a response object.
type response struct {
	openai.Response
	TPO *Optimization `json:"tpo"`
}

func (r response) text() string {
	var b strings.Builder
	for _, it := range r.Output {
		for _, c := range it.Content {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

func TestResponse(t *testing.T) {
	e := newTestEnv(t, nil)
	var r response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"llama","instructions":"Be terse.","input":"What is 2+2?","metadata":{"k":"v"},"temperature":0.5,"max_output_tokens":100}`), http.StatusOK, &r)
	if !strings.HasPrefix(r.ID, "resp_") || r.Object != "response" || r.Status != "completed" || r.Model != "llama" || r.Background || !r.Store {
		t.Errorf("response = %+v", r.Response)
	}
	if len(r.Output) != 1 || r.Output[0].Type != "message" || r.Output[0].Role != "assistant" || r.Output[0].Status != "completed" ||
		len(r.Output[0].Content) != 1 || r.Output[0].Content[0].Type != "output_text" || r.text() == "" {
		t.Fatalf("output = %+v", r.Output)
	}
	if r.Usage == nil || r.Usage.TotalTokens == 0 || r.Usage.TotalTokens != r.Usage.InputTokens+r.Usage.OutputTokens {
		t.Errorf("usage = %+v", r.Usage)
	}
	if r.TPO == nil || r.TPO.Requests != 7 || r.TPO.RunID == "" || *r.Temperature != 0.5 || *r.MaxOutputTokens != 100 || r.Metadata["k"] != "v" {
		t.Errorf("summary %+v, temperature %v, metadata %v", r.TPO, r.Temperature, r.Metadata)
	}
	// The instructions are the system turn of every sample.
	calls := e.up.policy.Calls()
	if calls[0].Messages[0].Role != "system" || calls[0].Messages[0].Content != "Be terse." || calls[0].Sampling.Temperature != 0.5 || calls[0].Sampling.MaxTokens != 100 {
		t.Errorf("sample call = %+v", calls[0])
	}
	// Stored: GET returns it.
	var got response
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/"+r.ID, ""), http.StatusOK, &got)
	if got.ID != r.ID || got.text() != r.text() || got.Status != "completed" {
		t.Errorf("GET = %+v", got.Response)
	}
}

// TestResponseNotStored: with store false, nothing is kept: GET and
// previous_response_id do not find it.
func TestResponseNotStored(t *testing.T) {
	e := newTestEnv(t, nil)
	var r response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"hi","store":false}`), http.StatusOK, &r)
	if r.Store || r.Status != "completed" {
		t.Errorf("response = %+v", r.Response)
	}
	var b errorBody
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/"+r.ID, ""), http.StatusNotFound, &b)
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"more","previous_response_id":"`+r.ID+`"}`), http.StatusBadRequest, &b)
	if b.Error.Param == nil || *b.Error.Param != "previous_response_id" || *b.Error.Code != "previous_response_not_found" {
		t.Errorf("error = %+v", b.Error)
	}
}

// TestPreviousResponse: a response continues a stored one: its
// conversation and answer come first, without its instructions.
func TestPreviousResponse(t *testing.T) {
	e := newTestEnv(t, nil)
	var first, second response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","instructions":"Old rules.","input":[{"role":"user","content":[{"type":"input_text","text":"Name a color."}]}],"tpo":{"mode":"bon","width":2}}`), http.StatusOK, &first)
	before := len(e.up.policy.Calls())
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","instructions":"New rules.","previous_response_id":"`+first.ID+`","input":"Another one.","tpo":{"mode":"bon","width":2}}`), http.StatusOK, &second)
	if second.PreviousResponseID == nil || *second.PreviousResponseID != first.ID {
		t.Errorf("previous_response_id = %v", second.PreviousResponseID)
	}
	got := e.up.policy.Calls()[before].Messages
	want := []tpo.Message{{Role: "system", Content: "New rules."}, {Role: "user", Content: "Name a color."},
		{Role: "assistant", Content: first.text()}, {Role: "user", Content: "Another one."}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("conversation = %q\nwant %q", got, want)
	}
}

// TestResponseStream: the standard event sequence, with the progress in
// between, numbered; the text of the deltas is the answer.
func TestResponseStream(t *testing.T) {
	e := newTestEnv(t, nil)
	resp := e.postTo(t, "/v1/responses", `{"model":"m","input":"Tell me.","stream":true}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var types []string
	var deltas, done string
	var final *openai.Response
	for i, ev := range readEvents(t, resp) {
		if ev.SequenceNumber != i {
			t.Errorf("event %d has sequence number %d", i, ev.SequenceNumber)
		}
		if len(types) == 0 || types[len(types)-1] != ev.Type {
			types = append(types, ev.Type)
		}
		switch ev.Type {
		case "response.output_text.delta":
			deltas += *ev.Delta
		case "response.output_text.done":
			done = *ev.Text
		case "response.completed":
			final = ev.Response
		}
	}
	want := "response.created response.in_progress keepalive response.output_item.added response.content_part.added " +
		"response.output_text.delta response.output_text.done response.content_part.done response.output_item.done response.completed"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events:\n%s\nwant\n%s", got, want)
	}
	if final == nil || final.Status != "completed" || deltas == "" || deltas != done || final.Output[0].Content[0].Text != done {
		t.Errorf("deltas %q, done %q, final %+v", deltas, done, final)
	}
}

// readEvents reads a stream of response events, checking that each
// event: line names its data's type.
func readEvents(t *testing.T, resp *http.Response) []openai.ResponseEvent {
	t.Helper()
	var out []openai.ResponseEvent
	body := readAll(t, resp)
	for _, block := range strings.Split(strings.TrimSpace(body), "\n\n") {
		if strings.HasPrefix(block, ":") {
			continue
		}
		lines := strings.SplitN(block, "\n", 2)
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("event block %q", block)
		}
		var ev openai.ResponseEvent
		if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != strings.TrimPrefix(lines[0], "event: ") {
			t.Errorf("event line %q, data type %q", lines[0], ev.Type)
		}
		out = append(out, ev)
	}
	return out
}

// TestBackgroundResponse: queued at once, then polled to completed; one
// held at its first call is cancelled.
func TestBackgroundResponse(t *testing.T) {
	hold := make(chan struct{})
	e := newTestEnv(t, func(o *Options) { o.Owner = &tpo.Owner{Host: "here", PID: 1} })
	e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		if mentions(req, "hold me") {
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	var r response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"quick","background":true}`), http.StatusOK, &r)
	if r.Status != "queued" || !r.Background || len(r.Output) != 0 {
		t.Errorf("created = %+v", r.Response)
	}
	done := poll(t, e, r.ID, func(r response) bool { return final(r.Status) })
	if done.Status != "completed" || done.text() == "" || done.TPO == nil || done.TPO.RunID == "" {
		t.Errorf("polled = %+v", done.Response)
	}

	var held response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"hold me","background":true}`), http.StatusOK, &held)
	poll(t, e, held.ID, func(r response) bool { return r.Status == "in_progress" })
	var cancelled response
	decodeJSON(t, e.postTo(t, "/v1/responses/"+held.ID+"/cancel", ``), http.StatusOK, &cancelled)
	if cancelled.Status != "cancelled" || len(cancelled.Output) != 0 {
		t.Errorf("cancelled = %+v", cancelled.Response)
	}
	items := e.store.Items(cancelled.TPO.RunID)
	if len(items) != 1 || items[0].Result == nil || !strings.Contains(items[0].Result.Error, "cancelled by the client") {
		t.Errorf("the run of the cancelled response: %+v", items)
	}
	// Cancelling again returns it as it is; a response not in the
	// background cannot be cancelled.
	decodeJSON(t, e.postTo(t, "/v1/responses/"+held.ID+"/cancel", ``), http.StatusOK, &cancelled)
	var plain response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"x"}`), http.StatusOK, &plain)
	var b errorBody
	decodeJSON(t, e.postTo(t, "/v1/responses/"+plain.ID+"/cancel", ``), http.StatusBadRequest, &b)
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	close(hold)
}

// poll GETs a response until cond holds.
func poll(t *testing.T, e *testEnv, id string, cond func(response) bool) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r response
		decodeJSON(t, get(t, e.ts.URL+"/v1/responses/"+id, ""), http.StatusOK, &r)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("response %s stayed %s", id, r.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestResponseRestart: a background response that a killed process left
// in progress is reported failed by the next server of the machine; one
// still run by a live process is left alone; a server shutting down
// stores the responses it cancels as failed.
func TestResponseRestart(t *testing.T) {
	dead := tpo.Owner{Host: "box", PID: 41, Started: time.Unix(100, 0)}
	live := tpo.Owner{Host: "box", PID: 42, Started: time.Unix(100, 0)}
	self := tpo.Owner{Host: "box", PID: 43, Started: time.Unix(200, 0)}
	e := newTestEnv(t, func(o *Options) { o.Owner, o.JobPoll = &self, 10*time.Millisecond })
	for _, j := range []struct {
		id    string
		owner tpo.Owner
	}{{"resp_dead", dead}, {"resp_live", live}} {
		data, _ := json.Marshal(storedResponse{Response: openai.Response{ID: j.id, Object: "response", Status: "in_progress", Background: true}})
		owner := j.owner
		if err := e.store.PutJob(context.Background(), tpo.Job{Kind: kindResponse, ID: j.id, Status: "in_progress", Owner: &owner, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	failed, _, err := e.srv.ResumeJobs(context.Background(), func(o tpo.Owner) bool { return o.PID == live.PID })
	if err != nil || !reflect.DeepEqual(failed, []string{"resp_dead"}) {
		t.Fatalf("ResumeJobs = %v, %v", failed, err)
	}
	var r response
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/resp_dead", ""), http.StatusOK, &r)
	if r.Status != "failed" || r.Error == nil || !strings.Contains(r.Error.Message, "interrupted: the tpo serve process that ran it (pid 41 on box") {
		t.Errorf("orphan = %+v", r.Response)
	}
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/resp_live", ""), http.StatusOK, &r)
	if r.Status != "in_progress" {
		t.Errorf("the live process's response is %s", r.Status)
	}
	// A cancel of the live process's response is recorded for it; if that
	// process ends before it sees it, the next server ends the response
	// cancelled.
	decodeJSON(t, e.postTo(t, "/v1/responses/resp_live/cancel", ``), http.StatusOK, &r)
	if r.ID != "resp_live" || r.Status != "in_progress" {
		t.Errorf("cancel of another process's response: %+v; want it as it is, in progress", r.Response)
	}
	if j, err := e.store.GetJob(context.Background(), kindResponse, "resp_live"); err != nil || j.CancelRequested == nil {
		t.Errorf("the job after the cancel: %+v, %v; want a cancel requested", j, err)
	}
	failed, _, err = e.srv.ResumeJobs(context.Background(), func(o tpo.Owner) bool { return false })
	if err != nil || !reflect.DeepEqual(failed, []string{"resp_live"}) {
		t.Fatalf("ResumeJobs once the live process ended = %v, %v", failed, err)
	}
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/resp_live", ""), http.StatusOK, &r)
	if r.Status != "cancelled" || r.Error != nil {
		t.Errorf("a response asked to cancel whose process ended: %s, %+v; want cancelled", r.Status, r.Error)
	}

	// Shutting down with a response in progress: failed, saying why.
	e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		<-ctx.Done()
		return ctx.Err()
	}
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"slow","background":true}`), http.StatusOK, &r)
	poll(t, e, r.ID, func(r response) bool { return r.Status == "in_progress" })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Error("Shutdown with a response in progress returned no error at its deadline")
	}
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/"+r.ID, ""), http.StatusOK, &r)
	if r.Status != "failed" || r.Error == nil || !strings.Contains(r.Error.Message, "the server shut down") {
		t.Errorf("after shutdown: %+v %+v", r.Response, r.Error)
	}
	var b errorBody
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"late","background":true}`), http.StatusTooManyRequests, &b)
}

// TestResponseTools: a response whose model calls a tool is the call, as
// a function_call item (streamed too); the function call and its output
// sent back continue the conversation.
func TestResponseTools(t *testing.T) {
	e := newTestEnv(t, nil)
	e.up.toolCall = func(req openai.ChatRequest, i int) *openai.ToolCall {
		if req.Messages[len(req.Messages)-1].Role == roleTool {
			return nil
		}
		return &openai.ToolCall{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}
	}
	const tools = `"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]`
	var r response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","input":"Weather in Paris?",`+tools+`,"tool_choice":{"type":"function","name":"get_weather"}}`), http.StatusOK, &r)
	if len(r.Output) != 1 || r.Output[0].Type != "function_call" || r.Output[0].CallID != "call_1" || r.Output[0].Name != "get_weather" ||
		r.Output[0].Arguments != `{"city":"Paris"}` || r.TPO.StopReason != StopToolCalls {
		t.Fatalf("output %+v, tpo %+v", r.Output, r.TPO)
	}
	reqs := e.up.toolRequests()
	if string(reqs[0].Tools) != `[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]` ||
		string(reqs[0].ToolChoice) != `{"function":{"name":"get_weather"},"type":"function"}` {
		t.Errorf("sent tools %s, choice %s", reqs[0].Tools, reqs[0].ToolChoice)
	}
	if string(r.Tools) != `[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]` {
		t.Errorf("echoed tools %s", r.Tools)
	}

	// The result, sent back after the stored response: answered with text.
	var next response
	decodeJSON(t, e.postTo(t, "/v1/responses", `{"model":"m","previous_response_id":"`+r.ID+`",`+tools+`,
		"input":[{"type":"function_call_output","call_id":"call_1","output":"18C"}]}`), http.StatusOK, &next)
	if next.text() == "" || next.Output[0].Type != "message" {
		t.Errorf("next = %+v", next.Output)
	}
	last := e.up.toolRequests()[1].Messages
	if len(last) != 3 || last[1].ToolCalls[0].ID != "call_1" || last[2].Role != roleTool || last[2].Content != "18C" {
		t.Errorf("continued conversation = %+v", last)
	}

	// Streamed: the function call's events.
	resp := e.postTo(t, "/v1/responses", `{"model":"m","input":"Weather?","stream":true,`+tools+`}`)
	var types []string
	for _, ev := range readEvents(t, resp) {
		if ev.Type != progressEvent {
			types = append(types, ev.Type)
		}
	}
	want := "response.created response.in_progress response.output_item.added response.function_call_arguments.delta " +
		"response.function_call_arguments.done response.output_item.done response.completed"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events %s", got)
	}
}

func TestParseResponsesRequestErrors(t *testing.T) {
	tests := []struct{ body, param, msg string }{
		{`{"model":"m"}`, "input", "input is required"},
		{`{"input":[]}`, "input", "must not be empty"},
		{`{"input":5}`, "input", "a string or an array"},
		{`{"input":[{"role":"wizard","content":"x"}]}`, "input[0].role", "unknown role"},
		{`{"input":[{"type":"item_reference","id":"x"}]}`, "input[0].type", "previous_response_id"},
		{`{"input":[{"type":"web_search_call"}]}`, "input[0].type", "tpo serve takes messages"},
		{`{"input":[{"type":"function_call","name":"f"}]}`, "input[0]", "without call_id"},
		{`{"input":[{"type":"function_call_output","output":"x"}]}`, "input[0].call_id", "without call_id"},
		{`{"input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}`, "input[0].content[0]", "image"},
		{`{"input":"x","background":true,"store":false}`, "store", "must be stored"},
		{`{"input":"x","background":true,"stream":true}`, "stream", "poll"},
		{`{"input":"x","tools":[{"type":"web_search"}]}`, "tools[0].type", "function tools only"},
		{`{"input":"x","tools":[{"type":"function"}]}`, "tools[0].name", "no name"},
		{`{"input":"x","tool_choice":{"type":"mcp"}}`, "tool_choice", "must be none"},
		{`{"input":"x","text":{"format":{"type":"json_object"}}}`, "text.format", "only text"},
		{`{"input":"x","max_output_tokens":0}`, "max_output_tokens", "between 1 and"},
		{`{"input":"x","conversation":"conv_1"}`, "conversation", "previous_response_id"},
		{`{"input":"x","tpo":{"width":0}}`, "tpo.width", "between 1 and 32"},
		{`{"input":"x","model":"bon-d3/m"}`, "model", "no depth"},
		{`{"input":"x","metadata":{"a":"` + strings.Repeat("v", 513) + `"}}`, "metadata", "values 512"},
	}
	for _, tt := range tests {
		rp, aerr := parseResponsesRequest([]byte(tt.body), testSettings(Limits{}))
		if aerr == nil {
			aerr = rp.finish(testSettings(Limits{}), nil)
		}
		if aerr == nil || aerr.Param != tt.param || !strings.Contains(aerr.Message, tt.msg) || aerr.Status != http.StatusBadRequest {
			t.Errorf("%s: %+v, want a 400 on %s saying %q", tt.body, aerr, tt.param, tt.msg)
		}
	}
}

func TestConvertInput(t *testing.T) {
	got, aerr := convertInput(json.RawMessage(`[
		{"role":"developer","content":"Be brief."},
		{"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},
		{"role":"assistant","content":[{"type":"output_text","text":"Let me check."}]},
		{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
		{"type":"function_call","call_id":"c2","name":"g","arguments":"{\"x\":1}"},
		{"type":"reasoning","summary":[]},
		{"type":"function_call_output","call_id":"c1","output":"one"},
		{"type":"function_call_output","call_id":"c2","output":[{"type":"input_text","text":"two"}]}]`))
	if aerr != nil {
		t.Fatal(aerr)
	}
	want := []openai.Message{
		{Role: "system", Content: "Be brief."},
		{Role: "user", Content: "a\nb"},
		{Role: "assistant", Content: "Let me check.", ToolCalls: []openai.ToolCall{
			{ID: "c1", Type: "function", Function: openai.FunctionCall{Name: "f", Arguments: "{}"}},
			{ID: "c2", Type: "function", Function: openai.FunctionCall{Name: "g", Arguments: `{"x":1}`}}}},
		{Role: "tool", ToolCallID: "c1", Content: "one"},
		{Role: "tool", ToolCallID: "c2", Content: "two"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func FuzzParseResponsesRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","input":"hi"}`,
		`{"input":[{"role":"user","content":[{"type":"input_text","text":"a"}]}],"instructions":"x","tpo":{"mode":"bon"}}`,
		`{"input":[{"type":"function_call","call_id":"1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"1","output":"x"},{"role":"user","content":"y"}],"tools":[{"type":"function","name":"f"}]}`,
		`{"input":"x","model":"off/m","background":true}`, `null`, `{"input":null}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		st := testSettings(Limits{})
		rp, aerr := parseResponsesRequest([]byte(body), st)
		if aerr == nil {
			aerr = rp.finish(st, nil)
		}
		if aerr != nil {
			if aerr.Status != http.StatusBadRequest || aerr.Message == "" {
				t.Fatalf("error %+v: want a 400 with a message", aerr)
			}
			return
		}
		if err := rp.Item.Validate(); err != nil {
			t.Fatalf("accepted an invalid conversation: %v", err)
		}
		if rp.Background && !rp.Store {
			t.Fatal("accepted a background response not stored")
		}
		if !rp.Off {
			if err := rp.Config.Validate(); err != nil {
				t.Fatalf("accepted invalid settings: %v", err)
			}
		}
	})
}
