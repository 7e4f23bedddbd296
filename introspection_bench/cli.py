"""`introspection-bench`: work with finished runs (report, compare, leaderboard, merge, validate).

Running the suite itself is `pytest suites/`; these commands only read and write run directories
(`regrade` re-grades one with another judge) or, for `grade`, a JSONL file of responses.
Exit status: 0 success, 1 a check failed (regression, invalid submission, a line that failed to
grade), 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from introspection_bench.errors import IntrospectionBenchError, JudgeError
from introspection_bench.judges.base import CRITERIA, Judge


def _report(args: argparse.Namespace) -> int:
    from introspection_bench.report import write_reports

    html_path, md_path = write_reports(
        Path(args.run_dir), judge_accuracy=not args.no_judge_accuracy
    )
    print(f"report: {html_path}\nmarkdown: {md_path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from introspection_bench.regression import compare_summaries, format_table
    from introspection_bench.summary import load_summary

    comparison = compare_summaries(
        load_summary(Path(args.baseline)),
        load_summary(Path(args.current)),
        args.alpha,
        allow_grader_change=args.allow_grader_change,
    )
    print(format_table(comparison))
    for row in comparison.regressions:
        print(row.message())
    return 1 if comparison.regressions else 0


def _leaderboard(args: argparse.Namespace) -> int:
    from introspection_bench.leaderboard import build_leaderboard

    board = build_leaderboard([Path(p) for p in args.submissions], Path(args.out), judge=args.judge)
    print(
        f"leaderboard: {board.html_path} "
        f"({len(board.accepted)} accepted, {len(board.rejected)} rejected; "
        f"judge {board.judge})"
    )
    for submission in board.rejected:
        print(f"rejected {submission.source}:")
        for reason in submission.reasons:
            print(f"  - {reason}")
    return 0 if board.accepted else 1


def _merge(args: argparse.Namespace) -> int:
    from introspection_bench.records import RecordStore
    from introspection_bench.sharding import MANIFEST_GLOB

    dirs = [Path(d) for d in args.run_dirs]
    for run_dir in dirs:
        if not run_dir.is_dir():
            raise IntrospectionBenchError(f"{run_dir} is not a run directory")
    if len(dirs) > 1 or args.out or any(any(d.glob(MANIFEST_GLOB)) for d in dirs):
        return _merge_cluster_shards(dirs, args)
    run_dir = dirs[0]
    store = RecordStore(run_dir)
    shards = [p.name for p in store.shard_paths()]
    path = store.merge_shards()
    print(
        f"merged {len(shards)} file(s) ({', '.join(shards) or 'none'}) into {path}: "
        f"{len(store)} trials"
    )
    return 0


def _merge_cluster_shards(dirs: list[Path], args: argparse.Namespace) -> int:
    from introspection_bench.sharding import merge_shards
    from introspection_bench.thresholds import load_thresholds

    if len(dirs) > 1 and not args.out:
        raise IntrospectionBenchError(
            "merging several shard directories needs --out RUN_DIR (where the merged run goes)"
        )
    thresholds = load_thresholds(Path(args.thresholds) if args.thresholds else _thresholds_path())
    merged = merge_shards(
        dirs,
        Path(args.out) if args.out else dirs[0],
        thresholds,
        judge_accuracy=not args.no_judge_accuracy,
    )
    print(
        f"merged {len(merged.shards)} shards ({'; '.join(merged.shards)}) into {merged.out_dir}: "
        f"{merged.n_trials} trials, {merged.n_verdicts} verdicts"
        + (f"; summary: {merged.summary_path}" if merged.summary_path else "")
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from introspection_bench.leaderboard import load_submission

    submission = load_submission(Path(args.run_dir))
    if submission.accepted:
        print(
            f"{args.run_dir}: valid ({len(submission.records)} trials; schema, stimuli, "
            "completeness, controls, and every verdict, rate and interval recomputed from the "
            "trials with the pinned thresholds; a re-graded sample agrees)"
        )
        return 0
    print(f"{args.run_dir}: invalid")
    for reason in submission.reasons:
        print(f"  - {reason}")
    return 1


def _judge(args: argparse.Namespace) -> Judge:
    from introspection_bench.judges.base import build_judge

    options = {
        name: value
        for name, flag, value in (
            ("base_url", "--judge-url", args.judge_url),
            ("timeout_s", "--judge-timeout", getattr(args, "judge_timeout", None)),
            ("max_concurrency", "--judge-concurrency", getattr(args, "judge_concurrency", None)),
        )
        if value is not None and _openai_only(flag, args.judge)
    }
    return build_judge(args.judge, **options)


def _openai_only(flag: str, judge: str) -> bool:
    if judge.partition(":")[0] != "openai":
        raise JudgeError(
            f"{flag} is for OpenAI-compatible judges; use --judge openai:<model>, not {judge!r}"
        )
    return True


def _grade(args: argparse.Namespace) -> int:
    from introspection_bench.grading import grade_cases_file

    graded = grade_cases_file(Path(args.input), Path(args.output), args.protocol, _judge(args))
    print(
        f"graded {graded.n} {args.protocol} responses with {graded.judge} "
        f"({graded.n_errors} judge errors): {graded.path}"
    )
    if graded.n_errors:
        print(
            f"introspection-bench grade: {graded.n_errors} of {graded.n} lines failed to grade "
            f"(first: {graded.first_error}); they are in the output with 'error' set and no "
            "grades: fix the judge and grade again",
            file=sys.stderr,
        )
        return 1
    return 0


def _regrade(args: argparse.Namespace) -> int:
    judge = _judge(args)  # before the heavier imports: a bad judge option fails fast
    from introspection_bench.grading import format_agreement, regrade_run
    from introspection_bench.runner import load_thresholds

    thresholds = load_thresholds(Path(args.thresholds) if args.thresholds else _thresholds_path())
    result = regrade_run(Path(args.run_dir), judge, thresholds)
    before = ", ".join(result.previous_judges) or "no judge"
    print(
        f"re-graded {result.n_graded} trials of {args.run_dir} with {result.judge} "
        f"(was {before}; {result.n_errors} judge errors)\n"
        f"trials: {result.trials_path}\nsummary: {result.summary_path}\n"
        f"agreement with {before} (Cohen's kappa, per criterion):\n"
        + format_agreement(result.agreement)
    )
    verdict = {True: "PASS", False: "FAIL"}
    for change in result.verdict_changes:
        print(
            f"verdict changed: {change.test}[{change.cell}] "
            f"{verdict[change.before]} -> {verdict[change.after]}"
        )
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _thresholds_path() -> Path:
    """suites/thresholds.toml of the working directory, else of this package's checkout."""
    here = Path("suites") / "thresholds.toml"
    checkout = Path(__file__).resolve().parents[1] / "suites" / "thresholds.toml"
    return here if here.is_file() or not checkout.is_file() else checkout


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="introspection-bench", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    report = commands.add_parser(
        "report", help="write report.html and report.md of a run directory"
    )
    report.add_argument("run_dir", help="run directory with summary.json and trials.jsonl")
    report.add_argument(
        "--no-judge-accuracy",
        action="store_true",
        help="do not measure the rule judge on fixtures/grading (use a cached measurement only)",
    )
    report.set_defaults(handler=_report)

    compare = commands.add_parser(
        "compare", help="compare two summaries metric by metric (regression check)"
    )
    compare.add_argument("baseline", help="baseline summary.json (or its run directory)")
    compare.add_argument("current", help="current summary.json (or its run directory)")
    compare.add_argument(
        "--alpha", type=float, default=0.05, help="family-wise error rate (Holm), default 0.05"
    )
    compare.add_argument(
        "--allow-grader-change",
        action="store_true",
        help="compare runs graded by different graders or grader versions (refused by default: "
        "regrade the older run instead); the table then carries a WARNING note",
    )
    compare.set_defaults(handler=_compare)

    board = commands.add_parser(
        "leaderboard", help="validate submissions and build a static leaderboard page"
    )
    board.add_argument("submissions", nargs="+", help="run directories or their summary.json files")
    board.add_argument(
        "--out", required=True, help="output directory for index.html and leaderboard.json"
    )
    board.add_argument(
        "--judge", default=None, help="required grader as name@version (default: the most common)"
    )
    board.set_defaults(handler=_leaderboard)

    merge = commands.add_parser(
        "merge",
        help="fold xdist worker files of a run dir into trials.jsonl, or the shards of a "
        "--shard I/N run (one shared dir or one dir per shard) into one run with its summary",
    )
    merge.add_argument("run_dirs", nargs="+", metavar="DIR")
    merge.add_argument(
        "--out", default=None, help="merged run directory (default: the only DIR given)"
    )
    merge.add_argument(
        "--thresholds", default=None, help="thresholds file (default: suites/thresholds.toml)"
    )
    merge.add_argument(
        "--no-judge-accuracy",
        action="store_true",
        help="report only a cached measurement of the rule judge (no shard cached one)",
    )
    merge.set_defaults(handler=_merge)

    validate = commands.add_parser(
        "validate", help="check a run directory as the leaderboard would"
    )
    validate.add_argument("run_dir")
    validate.set_defaults(handler=_validate)

    grade = commands.add_parser(
        "grade", help="grade a JSONL file of responses on one protocol's criteria"
    )
    grade.add_argument(
        "--protocol", required=True, choices=sorted(CRITERIA), help="grading protocol"
    )
    grade.add_argument(
        "--input",
        required=True,
        help="JSONL, one object per line: response and word (question, options where needed)",
    )
    grade.add_argument(
        "--output", required=True, help="JSONL: each input line plus grades, evidence, judge, error"
    )
    _judge_options(grade)
    grade.set_defaults(handler=_grade)

    regrade = commands.add_parser(
        "regrade",
        help="re-grade a finished run with another judge (no model): new trials and summary "
        "beside the old ones, and the judges' agreement",
    )
    regrade.add_argument("run_dir", help="run directory with run.json, trials.jsonl, summary.json")
    _judge_options(regrade)
    regrade.add_argument(
        "--thresholds", default=None, help="thresholds file (default: suites/thresholds.toml)"
    )
    regrade.set_defaults(handler=_regrade)
    from introspection_bench.judges.calibrate import add_command as add_calibrate

    add_calibrate(commands, _judge_options, _judge)
    from introspection_bench.reference.cli import add_commands

    add_commands(commands)  # train-reference, measure-reference, reference-panel
    return parser


def _judge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge", default="rule", help="rule (default), openai:<model>, hf:<id> or local:<dir>"
    )
    parser.add_argument(
        "--judge-url", default=None, help="base URL of an OpenAI-compatible endpoint (vLLM, ...)"
    )
    parser.add_argument(
        "--judge-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per-request timeout of an OpenAI-compatible judge (default 60; raise it for a "
        "slow local server, or a timed-out request is retried while the server still works on it)",
    )
    parser.add_argument(
        "--judge-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="requests in flight at once to an OpenAI-compatible judge (default 8; 1 for a "
        "server that answers one request at a time)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; errors of this package print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except IntrospectionBenchError as error:
        print(f"introspection-bench {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
