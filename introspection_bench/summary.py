"""The versioned run summary (`summary.json`): configuration, identity, versions, metrics, verdicts."""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from introspection_bench.records import TrialRecord

SUMMARY_SCHEMA_VERSION = "1.0"
SUMMARY_FILE = "summary.json"
_PACKAGES = ("introspection-bench", "torch", "transformers", "scipy", "statsmodels", "openai")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_hash(cwd: Path | None = None) -> str | None:
    """The checkout's commit (with `-dirty`), or None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def build_summary(config: Any, records: Sequence[TrialRecord], verdicts: Sequence[Mapping[str, Any]], *, elapsed_s: float) -> dict[str, Any]:
    """The summary object: stable field order, one entry per verdict with its metrics."""
    identity = dict(verdicts[0]["identity"]) if verdicts else {}
    ordered = sorted(verdicts, key=lambda v: (v["test"], v["cell"]["label"]))
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.key() | {"device": config.device, "batch_size": config.batch_size},
        "identity": identity,
        "versions": package_versions(),
        "git": git_hash(),
        "n_trials": len(records),
        "n_errors": sum(1 for r in records if r.error),
        "elapsed_s": round(elapsed_s, 1),
        "verdicts": [{k: v for k, v in verdict.items() if k != "identity"} for verdict in ordered],
    }


def save_summary(summary: Mapping[str, Any], report_dir: Path) -> Path:
    """Write `summary.json` atomically; returns its path."""
    path = Path(report_dir) / SUMMARY_FILE
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(summary, indent=2, default=float))
    staging.replace(path)
    return path
