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
// one POST /pooling ({"task": "classify", "messages": [...],
// "add_generation_prompt": false}) per response and reads data[0].data[0],
// or, with TokenLevel (token_classify reward models), the value at the last
// token. add_generation_prompt is always sent: very old servers defaulted
// it to true on /pooling, which shifts every score.
//
// Requests carry "use_activation": false for raw scores, and never the
// legacy "activation" field, which from vLLM 0.11.1 on turns the activation
// on whenever it is present. vLLM versions before 0.11.1 ignore
// use_activation and return sigmoid outputs, which in bf16 are exactly 1.0
// for every reward above about +6, so good responses tie. VLLM.Check, run
// before any scoring, asks every replica for GET /version and refuses one
// older than MinVLLMVersion (0.11.1), naming its URL, its version and the
// minimum. Pre-releases and development builds of 0.11.1 ("0.11.1rc2",
// "0.11.1.dev123+gabcdef") sort before 0.11.1 by PEP 440 and count as
// older. A replica whose version cannot be told (GET /version answers 404,
// or not a version) is refused too. VLLMOptions.AllowOldServer (tpo's
// --reward-allow-old-vllm) lets either through with a warning. An
// unreachable replica, or one answering another error status, fails Check at
// once whatever the options.
//
// As a last line of defence the scorer logs a warning once if every score it
// has seen lies in [0,1] (SigmoidSuspected). Exact 0 and 1 count as inside,
// since a bf16 sigmoid saturates to exactly 1. A raw reward of exactly 0 or
// 1 is rare and only matters if every other score also lies in [0,1].
//
// Some vLLM 0.11.2-0.12 servers refuse /classify with token id lists (400,
// pydantic's "Input should be a valid string"). On that answer the scorer
// switches to /pooling with messages (one request per response, task
// classify, use_activation and add_generation_prompt false) for this call
// and all later ones, logs the switch once with the server's URL and notes
// it in the call's tpo.Scores.Notes. Other refusals of a batch are retried one
// response at a time to find the response at fault. A conversation longer
// than the model's context is reported with the response's index, from
// /tokenize's max_model_len when the server sends it, else from the
// server's refusal.
//
// # TEI
//
// TEI talks to an encoder classifier (such as
// OpenAssistant/reward-model-deberta-v3-large-v2) on text-embeddings-
// inference: POST /predict with {"inputs": [[prompt, response], ...],
// "raw_scores": true, "truncate": false}. The prompt is the conversation
// flattened to text by FlattenPrompt: the user turn alone for a single-turn
// conversation, a plain "Role: content" transcript otherwise. A model with
// several labels is read at LabelName, or at LABEL_0 by default (TEI sorts
// labels by score, so the first is not label 0).
//
// "truncate" is always sent: from TEI 1.9 the server's --auto-truncate
// defaults to true and a request that does not say is cut silently to the
// model's limit (512 tokens for DeBERTa reward models). A pair longer than
// the limit is therefore an error naming the response and the limit ("response
// 2 is too long for the reward model (600 tokens, the limit is 512)"). With
// TEIOptions.Truncate (tpo's --reward-truncate) such a pair is sent again
// with "truncate": true, and the call's tpo.Scores.Notes say so, so the step's
// notes show which response was scored truncated.
//
// Pairs go in batches of BatchSize (default 32, TEI's default limit).
// TEI.Check, run before any scoring, reads every replica's GET /info,
// lowers the batch size to the smallest max_client_batch_size and fails at
// once, naming the URL, for a replica that cannot be reached, is not a TEI
// server or serves an embedding model. A batch refused as too large ("batch
// size 64 > maximum allowed batch size 32") lowers the batch size to the
// maximum named, for this and later calls; a 413 without that message (the
// server's body size limit, in plain text) halves it. TEI answers both
// validation errors with 413 before v1.9 and 422 from it, so the scorer
// tells "batch too large" from "input too long" by the message, not the
// status. A batch refused for what a pair holds is scored one pair at a
// time, to find the pair at fault.
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
