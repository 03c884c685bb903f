// Package eval scores the outputs of TPO runs on the benchmarks the paper
// reports: MATH-500 answer checking, pairwise judge statistics (win rates with
// bootstrap intervals and a length-controlled win rate), XSTest refusal
// classification, and reward curves over optimization steps.
//
// Everything here is pure computation: no network, no files except what
// callers pass in as readers, and every random choice is seeded, so the same
// input always gives the same report.
package eval
