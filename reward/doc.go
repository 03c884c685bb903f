// Package reward implements tpo.Scorer with reward models and judges.
//
// Every scorer scores each response as the reply to a whole conversation
// (system prompt included): the response is the assistant turn that follows
// the conversation's last user turn. Scores come back one per response, in
// order; higher is better. No scorer caches: the optimizer deduplicates.
// The HTTP scorers retry transient failures (connection errors, 408, 429,
// 5xx), spread requests over replicas and cap requests in flight; their
// errors name the server, the HTTP status and the server's own message.
//
// # VLLM
//
// VLLM talks to a sequence-classification reward model (Skywork-Reward,
// FsfairX-LLaMA3-RM, ...) on vLLM's pooling runner, which renders each
// conversation with the reward model's own chat template. With
// MethodClassify (the default) it sends one POST /tokenize per response
// ({"messages": [...], "add_generation_prompt": false}), concurrently, then a
// single POST /classify with all the token id lists; the score of response i
// is probs[0] of the result whose index is i. With MethodPooling it sends
// one POST /pooling ({"task": "classify", "messages": [...]}) per response
// and reads data[0].data[0], or, with TokenLevel (token_classify reward
// models), the value at the last token.
//
// Requests carry "use_activation": false for raw scores. vLLM versions that
// predate the field ignore it and return sigmoid outputs, which in bf16 all
// crowd near 1; the scorer logs a warning once if every score it has seen
// lies strictly in (0,1) (SigmoidSuspected). A conversation longer than the
// model's context is reported with the response's index, from /tokenize's
// max_model_len when the server sends it, else from the server's refusal.
//
// # TEI
//
// TEI talks to an encoder classifier (such as
// OpenAssistant/reward-model-deberta-v3-large-v2) on text-embeddings-
// inference: POST /predict with {"inputs": [[prompt, response], ...],
// "raw_scores": true}. The prompt is the conversation flattened to text by
// FlattenPrompt: the user turn alone for a single-turn conversation, a plain
// "Role: content" transcript otherwise. Pairs go in batches of BatchSize
// (default 32, TEI's default limit); a 413 halves the batch size, for this
// and later calls. A model with several labels is read at LabelName, or at
// LABEL_0 by default (TEI sorts labels by score, so the first is not label
// 0).
//
// # Judge
//
// Judge asks an LLM behind any OpenAI-compatible chat endpoint (through an
// openai.Client: the policy model's own, so that TPO can run with a single
// local model, or one of its own) to grade each response from 1 to 10, one request
// per response, with temperature 0, max_tokens 8 and logprobs (top 20).
// With logprobs the score is the judge's expected grade over the number
// tokens where the grade is written (ExpectedJudgeScore), a finer signal
// than the grade itself that rarely ties; without, it is the grade in the
// text (ParseJudgeScore). A reply with no grade is retried once with a
// reminder. The prompts are text/templates (DefaultJudgeTemplates) that
// JudgeOptions can replace.
//
// # Exec
//
// Exec runs a user command with `sh -c` for each Score call. The command
// reads {"prompt": "<last user turn>", "messages": [...], "responses": [...]}
// on standard input and prints a JSON array with one number per response.
// A run longer than the timeout (default 60s) has its process group killed.
// Errors name the command, its exit status and the tail of its standard
// error, and say what was wrong with the output.
package reward
