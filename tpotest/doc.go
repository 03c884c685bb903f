// Package tpotest provides test doubles for tpo: in-memory fakes of the
// interfaces the optimizer consumes (Policy, Reward, MemStore) and
// in-process HTTP fakes of the model servers tpo talks to (ChatServer for
// OpenAI-compatible chat completion servers in the flavors of vLLM, Ollama,
// llama.cpp and OpenAI; VLLMRewardServer and TEIServer for reward models).
//
// The HTTP fakes run on loopback httptest servers, speak the servers' wire
// formats, including their error shapes and their quirks (llama.cpp refuses
// n > 1, Ollama ignores it, vLLM gives child i of a seeded request the seed
// seed+i), record every request for assertions and can inject failures.
// The reward fakes follow the behaviour of a chosen server version
// (VLLMRewardOptions.Version, TEIOptions.Version): which activation field
// vLLM reads, whether TEI truncates by default and with which status it
// refuses, as far as tpo depends on it.
// They are deterministic, so they serve tpo's own tests and users' tests of
// code built on tpo alike:
//
//	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: tpotest.LlamaCPP})
//	opts := openai.Options{Model: srv.Model()}
//	opts.URLs = []string{srv.URL()}
//	client, err := openai.New(opts)
//	...
//	for _, body := range srv.Bodies() { ... } // the exact JSON sent
package tpotest
