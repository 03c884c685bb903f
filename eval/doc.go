// Package eval scores the outputs of TPO runs on the benchmarks the paper
// reports. Its statistics are pure computation, and every random choice is
// seeded, so the same input always gives the same report.
//
//   - MATH-500: ExtractAnswer (or FindAnswer, which says whether the answer
//     was boxed, stated or only the last math expression of the response)
//     finds a response's final answer, Normalize and
//     Equivalent (or EquivalentFor, which knows when a problem asks for all
//     solutions) compare it with the reference, and Grade scores a whole set
//     of MathItem by level and subject.
//   - Pairwise judging: JudgeMessages builds the judge's prompt,
//     ParseVerdict reads its [[A]]/[[B]]/[[C]] verdict, Judgement merges the
//     two presentation orders, and Pairwise reports the win rate with a
//     bootstrap interval and tpo's length-adjusted estimate. Judge runs a
//     judge model (any tpo.Generator) over PairItems in both orders, with
//     bounded concurrency and one reminder when a reply holds no verdict.
//   - AlpacaEval 2: Annotation is a line of AlpacaEval's annotation files
//     (ReadAnnotations reads a JSON array or JSON Lines);
//     AlpacaEvalMetrics computes its leaderboard's figures (win_rate,
//     standard_error, n_wins, n_wins_base, n_draws, n_total,
//     discrete_win_rate, avg_length); LengthControlled computes its
//     length-controlled win rate with the CSVs it publishes (ReadLCData):
//     from its published weights for a model of its leaderboard, else by
//     fitting its GLM (length_controlled_noreg, without df_gamed.csv, is
//     an estimate); LengthAdjustedEstimate is the estimate without them.
//   - Arena-Hard-Auto v0.1: ArenaJudge plays its two games per question
//     (the baseline's answer first, then the model's) with an ArenaPrompt
//     (tpo's own, a Go template, or Arena-Hard's configuration used
//     unchanged, followed up as v0.1 does), ParseArenaVerdict reads the
//     labels, and ArenaHardScores turns judgments (ReadArenaJudgments
//     reads its files) into the Bradley-Terry win probability against the
//     baseline with a bootstrap interval, by v0.1's rules.
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
// Only Judge, ArenaJudge and RefusalClassifier talk to a model, through the
// tpo.Generator they are given; everything else is pure computation.
package eval
