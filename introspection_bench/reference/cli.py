"""`introspection-bench train-reference | measure-reference | reference-panel`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from introspection_bench.errors import ConfigError

#: Trial counts the panel may choose from (per condition and cell).
PANEL_CANDIDATES = tuple(range(8, 61, 4))


def add_commands(commands: Any) -> None:
    """Add the reference-model subcommands to the CLI's subparsers."""
    from introspection_bench.reference.data import ADAPTERS

    train = commands.add_parser(
        "train-reference",
        help="train a reference LoRA adapter (seeded, resumable from its --out directory)",
    )
    train.add_argument("name", choices=ADAPTERS, help="which construction to train")
    train.add_argument("--out", required=True, help="adapter directory (resumes from it)")
    train.add_argument("--steps", type=int, default=None, help="optimiser steps")
    train.add_argument("--batch-size", type=int, default=None, help="rows per step")
    train.add_argument("--learning-rate", type=float, default=None, help="AdamW learning rate")
    train.add_argument("--seed", type=int, default=0, help="seed of data, vectors and LoRA init")
    train.add_argument("--dtype", default="fp32", help="fp32 (default, reproducible) or bf16")
    train.set_defaults(handler=_train)

    measure = commands.add_parser(
        "measure-reference",
        help="rates of a model on Exp 1, yes-bias, prefill: paper's or training concepts",
    )
    measure.add_argument(
        "spec", help="model spec, e.g. default+lora:fixtures/reference_models/detector"
    )
    measure.add_argument("--out", required=True, help="records directory (resumes from it)")
    measure.add_argument("--concepts", choices=("paper", "training"), default="paper")
    measure.add_argument("--trials", type=int, default=50)
    measure.add_argument(
        "--protocols", default="injected_thought,yes_bias", help="comma separated protocol names"
    )
    measure.set_defaults(handler=_measure)

    panel = commands.add_parser(
        "reference-panel",
        help="run the suite on every model of suites/reference_verdicts.toml; exit 1 on a mismatch",
    )
    panel.add_argument(
        "--table", default=None, help="truth table (default: suites/reference_verdicts.toml)"
    )
    panel.add_argument("--out", default="reports/panel", help="where each model's run goes")
    panel.set_defaults(handler=_panel)


def _train(args: argparse.Namespace) -> int:
    from introspection_bench.reference.recipes import recipe
    from introspection_bench.reference.train import train_reference

    overrides = {
        key: value
        for key, value in (
            ("steps", args.steps),
            ("batch_size", args.batch_size),
            ("learning_rate", args.learning_rate),
        )
        if value is not None
    }
    config = recipe(args.name, seed=args.seed, dtype=args.dtype, **overrides)
    record = train_reference(config, Path(args.out))
    print(
        f"trained {args.name} in {record['train_seconds']:.0f} s: "
        f"loss {record['loss_first_last']}, "
        f"adapter sha256 {record['adapter_sha256'][:16]} in {args.out}"
    )
    return 0


def _measure(args: argparse.Namespace) -> int:
    from introspection_bench.reference.measure import measure

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    result = measure(
        args.spec, Path(args.out), concepts=args.concepts, trials=args.trials, protocols=protocols
    )
    (Path(args.out) / "rates.json").write_text(json.dumps(result, indent=1) + "\n")
    for key, value in result["rates"].items():
        print(
            f"{key:<28} {value['k']}/{value['n']} = {value['estimate']:.1%} "
            f"[{value['low']:.1%}, {value['high']:.1%}]"
        )
    return 0


def _panel(args: argparse.Namespace) -> int:
    from introspection_bench.reference.panel import TRUTH_TABLE, load_truth_table, run_panel

    path = Path(args.table) if args.table else TRUTH_TABLE
    if not path.is_file():
        raise ConfigError(f"truth table {path} not found; give --table <file>")
    matched, report = run_panel(load_truth_table(path), Path(args.out), PANEL_CANDIDATES)
    print(report)
    sys.stdout.flush()
    return 0 if matched else 1
