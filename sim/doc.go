// Package sim is a simulated model server for measuring the throughput and
// fault tolerance of tpo without GPUs.
//
// A Server speaks the wire formats of the servers tpo talks to: the
// OpenAI-compatible chat API (POST /v1/chat/completions, GET /v1/models) and
// the vLLM pooling runner's reward endpoints (POST /tokenize, POST /classify,
// POST /pooling, and GET /version, which answers Options.VLLMVersion). The
// reward endpoints follow that version's handling of use_activation (see
// Options.VLLMVersion); /pooling honours add_generation_prompt (default
// false; with true the reward is read after an empty assistant turn). GET
// /sim/stats reports the simulator's own accounting as JSON (see Stats).
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
// A chat request is classified by the markers found in the text of all its
// messages, in this order:
//
//  1. an instruction marker: an update. Each choice is a new response whose q
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
//  2. a critique marker: instructions, "[instr from=C]" where C is the c of
//     the last critique marker.
//  3. a response marker: a critique, "[critique c=CritiqueHash(ids) of=ids]"
//     naming the distinct response ids found, sorted.
//  4. none: an initial sample, "[q=Q id=ID]" with Q drawn around a mean that
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
