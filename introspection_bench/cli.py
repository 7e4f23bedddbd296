"""`introspection-bench`: work with finished runs (report, compare, leaderboard, merge, validate).

Running the suite itself is `pytest suites/`; these commands only read and write run directories.
Exit status: 0 success, 1 a check failed (regression, invalid submission), 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from introspection_bench.errors import IntrospectionBenchError


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
        load_summary(Path(args.baseline)), load_summary(Path(args.current)), args.alpha
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

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise IntrospectionBenchError(f"{run_dir} is not a run directory")
    store = RecordStore(run_dir)
    shards = [p.name for p in store.shard_paths()]
    path = store.merge_shards()
    print(
        f"merged {len(shards)} file(s) ({', '.join(shards) or 'none'}) into {path}: "
        f"{len(store)} trials"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from introspection_bench.leaderboard import load_submission

    submission = load_submission(Path(args.run_dir))
    if submission.accepted:
        print(
            f"{args.run_dir}: valid ({len(submission.records)} trials; "
            "schema, stimuli, rates and controls checked)"
        )
        return 0
    print(f"{args.run_dir}: invalid")
    for reason in submission.reasons:
        print(f"  - {reason}")
    return 1


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

    merge = commands.add_parser("merge", help="fold worker / shard trial files into trials.jsonl")
    merge.add_argument("run_dir")
    merge.set_defaults(handler=_merge)

    validate = commands.add_parser(
        "validate", help="check a run directory as the leaderboard would"
    )
    validate.add_argument("run_dir")
    validate.set_defaults(handler=_validate)
    return parser


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
