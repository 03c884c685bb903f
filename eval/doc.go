// Package eval scores the outputs of TPO runs on the benchmarks the paper
// reports. Its statistics are pure computation, and every random choice is
// seeded, so the same input always gives the same report.
//
//   - MATH-500: ExtractAnswer finds a response's final answer, Normalize and
//     Equivalent (or EquivalentFor, which knows when a problem asks for all
//     solutions) compare it with the reference, and Grade scores a whole set
//     of MathItem by level and subject.
//   - Pairwise judging (AlpacaEval, Arena-Hard style): JudgeMessages builds
//     the judge's prompt, ParseVerdict reads its [[A]]/[[B]]/[[C]] verdict,
//     Judgement merges the two presentation orders, and Pairwise reports the
//     win rate with a bootstrap interval and a length-controlled win rate.
//     Judge runs a judge model (any tpo.Generator) over PairItems in both
//     orders, with bounded concurrency and one reminder when a reply holds
//     no verdict.
//   - XSTest: Refusal classifies a response as compliance, full refusal or
//     partial refusal, and GradeXSTest scores responses against the prompts'
//     safe/unsafe labels. RefusalClassifier asks a model instead
//     (RefusalMessages, ParseRefusalLabel), and GradeXSTestKinds scores its
//     labels.
//   - RewardCurve summarizes tpo.Result values step by step: mean candidate
//     score, best score so far, final score and gain over best-of-N;
//     CurveBuilder computes the same from a stream of results.
//
// ReadJSONL and ReadJSONLFile read the shared data files (math500.jsonl,
// xstest.jsonl) into MathItem and XSTestItem values.
//
// Only Judge and RefusalClassifier talk to a model, through the
// tpo.Generator they are given; everything else is pure computation.
package eval
