// Package bench measures tpo against the simulated model server of package
// sim: how many prompts a minute the orchestrator gets through and how busy
// it keeps the server (Throughput), how much latency `tpo serve` adds to the
// upstream calls (Serve), and what a prompt costs in requests, generations,
// scored candidates and tokens (Tokens). Every benchmark runs in one process
// against one simulated server on loopback, through the same clients, store
// and runner as `tpo run` and `tpo serve`.
//
// Throughput compares the runner with Mimic, a scheduler that reproduces the
// paper's reference script: a few worker threads over fixed chunks of
// prompts with a barrier at the end of each chunk. Mimic sends the same
// requests through the same clients and templates, so only the scheduling
// differs.
//
// The micro-benchmarks of the orchestrator's own cost (CPU time and
// allocations per optimized item and per request, memory while streaming a
// large dataset) are ordinary Go benchmarks in this package:
//
//	go test -run '^$' -bench . -benchmem ./bench/
package bench
