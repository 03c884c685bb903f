// Package sim is a simulated model server for trying tpo, and measuring its
// throughput and fault tolerance, without GPUs or models.
//
// A Server speaks the wire formats of the servers tpo talks to: the
// OpenAI-compatible chat API (POST /v1/chat/completions, streamed or not,
// and GET /v1/models) and the vLLM pooling runner's reward endpoints (POST
// /tokenize, POST /classify, POST /pooling, and GET /version, which answers
// Options.VLLMVersion). It plays every role tpo gives a model: the policy
// (samples, critiques, instructions, updates), the LLM judge (a grade from 1
// to 10, with logprobs) and the reward model. The reward endpoints follow
// the version's handling of use_activation (see Options.VLLMVersion);
// /pooling honours add_generation_prompt (default false, or true with
// Options.PoolingGenerationPrompt as very old versions had it; with true
// the reward is read after an empty assistant turn), and with
// Options.RefuseTokenIDs /classify refuses token ids as some 0.11.2-0.12
// servers do. GET /sim/stats reports the
// simulator's own accounting as JSON (see Stats).
//
// Its texts are synthetic: machine-readable markers followed by filler
// words, never an answer to the prompt.
//
// # Timing
//
// Chat requests go through a continuous-batching scheduler like vLLM's: a
// request with n choices is n sequences; at most Options.Slots sequences are
// decoded together and the rest wait in a first-come-first-served queue. One
// goroutine advances decode steps. A step takes
//
//	StepBase + StepPerSeq*active + PrefillPerToken*(prompt tokens admitted in the step)
//
// of simulated time (the n sequences of a request share one prefill, as with
// prefix caching), and every active sequence produces one token per step, so a
// sequence of L tokens finishes L steps after it was admitted. One simulated
// second takes TimeScale wall seconds. Reward calls are not batched; each takes
// RewardBase + RewardPerToken*tokens of simulated time.
//
// # Prefix cache
//
// Prompts go through a model of vLLM's automatic prefix caching: the rendered
// conversation is cut into blocks of BlockTokens tokens, each named by a hash
// of its text and of every block before it; a prompt reuses the longest run of
// its leading blocks found in the cache, and only the rest is prefilled (at
// least one token always is). The blocks of every prompt, and of every prompt
// followed by a choice's text and the end of its turn, are cached, so a later
// request that repeats a conversation and its answer finds them. The cache
// holds Options.PrefixCacheBlocks blocks and evicts the least recently used,
// and of the blocks of one sequence the last ones first, as vLLM does, so
// that the start of a conversation, which later requests share, stays
// longest. Stats.PrefixCache reports the share of prompt tokens it served.
//
// Responses carry two extra headers: X-Sim-Queue-Seconds (simulated time a
// chat request waited before its first sequence was admitted) and
// X-Sim-Seconds (simulated time from arrival to the last token).
//
// Tokens are about four bytes of text: a text of b bytes counts as (b+3)/4
// tokens. The /tokenize endpoint returns ids that encode four bytes each, so
// /classify can turn them back into text. Conversations are rendered with a
// ChatML-like template ("<|im_start|>ROLE\nCONTENT<|im_end|>\n").
//
// # Content and its markers
//
// Every text the simulator generates carries a machine-readable marker, then
// filler words up to its length. Samples, critiques and instructions start
// with their marker; updates start with a short sentence and, when asked for,
// the opening <improved_response> tag, and the marker follows. The grammar (ids and hashes are
// lowercase hex, 1 to 16 digits; the simulator writes 8):
//
//	response    = "[q=" number " id=" hex "]"           e.g. [q=1.250 id=9f3a07c2]
//	critique    = "[critique c=" hex " of=" hex {"," hex} "]"
//	                                                     e.g. [critique c=0b1e55aa of=11aa22bb,9f3a07c2]
//	instruction = "[instr from=" hex "]"                 e.g. [instr from=0b1e55aa]
//	number      = ["-"] digits ["." digits]              (a finite float64)
//
// ParseMarkers finds them; the Format methods of ResponseMarker,
// CritiqueMarker and InstructionMarker write them.
//
// A chat request is classified by the text of all its messages, in this
// order:
//
//  1. a grading request: a grade (see "The judge" below). A request asks
//     for a grade when it names the scale ("1 to 10", "1-10", "1–10",
//     "1..10", "between 1 and 10", "out of 10") within 200 bytes of a word
//     of grading ("grade", "score", "rate", "rating" and their forms), in
//     any message, whatever the wording around them and whatever markers it
//     holds. (So a user prompt that itself asks for a rating from 1 to 10
//     gets a grade, and so do the critique calls that quote it: the
//     simulator cannot tell a judge from such a user.)
//  2. an instruction marker: an update. Each choice is a new response whose q
//     is the best q among the response markers of the prompt plus a positive
//     gain (exponentially distributed, mean Options.UpdateGain) when the last
//     instruction marker's "from" equals CritiqueHash of some set of response
//     ids present in the prompt (the instruction was derived from a critique
//     of these responses; with more than 12 distinct ids only the whole set,
//     single ids and pairs are tried); otherwise q is the mean q of the prompt's responses
//     plus Gaussian noise (standard deviation 0.5). When the prompt mentions
//     "improved_response", the response is wrapped in
//     "<improved_response>" ... "</improved_response>", except for a fraction
//     Options.UnparsedRate of the choices (a model that ignored the format).
//     With no response markers in the prompt, q is drawn as for a sample.
//  3. a critique marker: instructions, "[instr from=C]" where C is the c of
//     the last critique marker.
//  4. a response marker: a critique, "[critique c=CritiqueHash(ids) of=ids]"
//     naming the distinct response ids found, sorted.
//  5. none: an initial sample, "[q=Q id=ID]" with Q drawn around a mean that
//     depends on the conversation (standard normal per conversation, plus
//     Gaussian noise of standard deviation 0.8*temperature per choice).
//
// A text cut by max_tokens is a prefix of the text it would otherwise have
// been (finish_reason "length"), so a short budget can cut a marker or the
// closing tag.
//
// The reward of a text (see Reward) is the q of its first response marker
// plus a hash-based noise in [-RewardNoise, +RewardNoise); a text without one
// scores in [-4, -2). Reward endpoints score the last assistant turn of the
// conversation.
//
// # The judge
//
// A grading request is answered with the grade alone, one token, e.g. "7"
// (so any max_tokens fits it), with finish_reason "stop".
// The graded response is the last response marker of the request (a judge's
// prompt shows the conversation, then the response); its reward r is its q
// plus a noise in [-RewardNoise, +RewardNoise) hashed from the marker (the
// judge sees the marker, not the whole text Reward hashes), and a request
// without a response marker gets r in [-4, -2). The judge's distribution
// over the grades 1..10 is a Gaussian of standard deviation 0.7 grades
// around the mean grade MeanGrade(r) = 1 + 9/(1+exp(-(r-1)/2)): about 2.6
// at r = -2, 4.4 at 0, 5.5 at 1, 6.6 at 2, 7.6 at 3, 8.4 at 4 and 9.3 at 6,
// within 1..10 whatever r. Samples' rewards are about standard normal across
// prompts and an update that follows its instructions gains about 1, so the
// judge grades a first sample about 4 and climbs about a grade a step,
// without reaching 10 within the depths TPO uses. At temperature 0 the
// grade is the most likely one (the nearest whole number to the mean grade);
// at a higher temperature it is drawn from the distribution sharpened or
// flattened by the temperature. So a judge's grades track the reward, and
// its expected grade over the logprobs is a finer signal than the grade.
//
// With "logprobs": true a grade's choice carries OpenAI's logprobs object:
// content holds the grade's token with its logprob, its bytes and the
// top_logprobs (0 to 20; 0 when not given) most likely tokens at its
// position, by probability: the ten grades, which hold 99% of the
// probability, and a few tokens that are not grades ("The", "**", ...). A
// choice that is not a grade has "logprobs": null even when they were asked
// for, and so has every choice of a request that did not ask.
//
// # Streaming
//
// With "stream": true a chat completion comes as server-sent events, as vLLM
// and OpenAI send them: "data: {...}" chunks of object
// "chat.completion.chunk" sharing one id. When the scheduler decodes the
// first token, each choice gets a chunk with the role; then content deltas
// follow as the scheduler decodes tokens, the choices interleaved by index
// (each delta holds the tokens a choice gained since its last one); each
// choice ends with a chunk with an empty delta and its finish_reason. With
// "stream_options": {"include_usage": true} every chunk carries
// "usage": null and a last chunk has no choices and the usage. The stream
// ends with "data: [DONE]". The X-Sim timing headers come as HTTP trailers.
// stream_options without "stream": true is a 400, as with vLLM. Error
// faults and hangs strike before the stream starts; a drop fault cuts the
// connection halfway through the tokens and a malformed fault sends half a
// chunk there and ends the body.
//
// # Determinism
//
// The same Options.Seed and the same request give the same texts. Choice i of
// a request with seed s is the sample of seed s+i, as with vLLM, so requests
// with seeds s and s+1 share samples. Requests without a seed are numbered per
// conversation: the k-th unseeded request for a conversation gets the k-th
// stream of samples. Temperature 0 gives n identical choices. Faults are
// drawn from one generator seeded by Options.Seed, in the order requests
// reach it.
//
// # Faults
//
// Options.Faults (and Options.RewardFaults for the reward endpoints) inject
// the failures real deployments show: error statuses 429, 500 and 503 with
// the error body of a chosen server (ErrorStyle), requests that hang,
// connections dropped in the middle of the body, 200 responses whose body is
// not JSON, and a slow first byte. Rates are probabilities per request.
package sim
