"""Split a run's trials over jobs (`--shard I/N`), and fold finished shards back into one run.

A shard is one job of a cluster array (SLURM `--array`, a Kubernetes indexed Job, a CI
matrix). Every shard builds the same trial list from the same configuration, cuts each
protocol's trials into groups (trials of one condition and cell, `GROUP_TRIALS` at a time),
and keeps the groups that a longest-processing-time split by expected decode cost gives it.
The split depends only on the trial list, never on what is already on disk, so a shard that
is rerun resumes the same trials. A shard writes `trials.shard-I-of-N*.jsonl` and, when its
session ends, `shard-I-of-N.json`: its configuration, identity, tests, each protocol's full
trial order and the ids it was assigned. `merge_shards` checks those manifests and writes one
run (records, summary, reports) as an unsharded run of the configuration would.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from introspection_bench.errors import ConfigError, RecordsError
from introspection_bench.records import RUN_FILE, TRIALS_FILE, RecordStore, TrialRecord

if TYPE_CHECKING:
    from introspection_bench.protocols.base import Trial

#: Trials of one condition and cell per group (they share a prompt: one prefix encoding).
GROUP_TRIALS = 8
#: Cost of a prompt token relative to a generated one (prefill runs all positions in one pass).
PREFILL_WEIGHT = 0.1
MANIFEST_GLOB = "shard-*-of-*.json"
#: The report's cached measurement of the rule judge (copied from a shard into the merge).
JUDGE_ACCURACY_FILE = "judge_accuracy.json"
_MANIFEST_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.json")
#: Identity fields that may differ between shards (each job has its own device).
_VOLATILE_IDENTITY = ("device",)


@dataclass(frozen=True)
class Shard:
    """One slice of a run: shard `index` of `count` (1-based, as SLURM array ids usually are)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse `I/N` (1 <= I <= N).

        Raises:
            ConfigError: For anything else, naming the value and the expected form.

        """
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ConfigError(f"--shard {text!r} is not I/N; give e.g. --shard 1/4")
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 1 <= index <= count:
            raise ConfigError(
                f"--shard {text!r}: the index must be in 1..N (shards are numbered from 1), "
                f"e.g. --shard 1/{max(count, 1)}"
            )
        return cls(index, count)

    @property
    def label(self) -> str:
        """`I/N`."""
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """`shard-I-of-N`: the stem of this shard's trial files and manifest."""
        return f"shard-{self.index}-of-{self.count}"

    def worker(self, xdist_worker: str | None) -> str:
        """The record-store worker name: one trials file per shard (and per xdist worker)."""
        if xdist_worker in (None, "master"):
            return self.name
        return f"{self.name}.{xdist_worker}"

    def manifest_path(self, run_dir: Path) -> Path:
        """Where this shard's manifest goes in `run_dir`."""
        return Path(run_dir) / f"{self.name}.json"


def trial_cost(trial: Trial) -> float:
    """Expected decode cost of a trial: generated tokens plus its prompt at prefill weight."""
    return trial.max_new_tokens + PREFILL_WEIGHT * len(trial.prompt.input_ids)


def trial_groups(trials: Sequence[Trial]) -> dict[str, list[Trial]]:
    """Trials cut into groups: one condition and cell, at most `GROUP_TRIALS` per group.

    Returns:
        Group key -> its trials, keys sorted; within a key trials keep their given order.

    """
    by_cell: dict[tuple[str, str, str, str], list[Trial]] = {}
    for trial in trials:
        cell = (trial.protocol, trial.condition, f"{trial.layer}", f"{trial.strength}")
        by_cell.setdefault(cell, []).append(trial)
    groups: dict[str, list[Trial]] = {}
    for cell, members in sorted(by_cell.items()):
        ordered = sorted(members, key=lambda t: t.trial_id)
        for start in range(0, len(ordered), GROUP_TRIALS):
            key = "/".join(cell) + f"#{start // GROUP_TRIALS}"
            groups[key] = ordered[start : start + GROUP_TRIALS]
    return groups


def assign_groups(costs: Mapping[str, float], count: int, salt: str = "") -> dict[str, int]:
    """Longest-processing-time split of groups over `count` shards (0-based shard per group).

    The costliest group goes to the least-loaded shard; equal loads are broken by a rotation
    derived from `salt` (the protocol), so one shard does not take every protocol's remainder.
    Deterministic: the result depends only on the keys, the costs and `salt`.
    """
    rotation = int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % count
    loads = [0.0] * count
    assignment = {}
    for key in sorted(costs, key=lambda k: (-costs[k], k)):
        shard = min(range(count), key=lambda s: (loads[s], (s - rotation) % count))
        assignment[key] = shard
        loads[shard] += costs[key]
    return assignment


def select_trials(trials: Sequence[Trial], shard: Shard) -> list[Trial]:
    """The trials of `shard`, in their given order."""
    groups = trial_groups(trials)
    costs = {key: sum(trial_cost(t) for t in members) for key, members in groups.items()}
    protocol = trials[0].protocol if trials else ""
    owner = assign_groups(costs, shard.count, protocol)
    mine = {
        t.trial_id
        for key, members in groups.items()
        if owner[key] == shard.index - 1
        for t in members
    }
    return [t for t in trials if t.trial_id in mine]


def shard_loads(trials: Sequence[Trial], count: int) -> list[float]:
    """Expected decode cost per shard (for balance checks and planning)."""
    loads = [0.0] * count
    for index in range(count):
        loads[index] = sum(trial_cost(t) for t in select_trials(trials, Shard(index + 1, count)))
    return loads


# -- manifests ---------------------------------------------------------------------------------
def write_manifest(
    shard: Shard,
    run_dir: Path,
    *,
    config: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    elapsed_s: float,
) -> Path:
    """Write `shard-I-of-N.json` from the entries the shard's tests reported.

    Args:
        shard: This shard.
        run_dir: The shard's run directory.
        config: The run configuration (`RunConfig.key()` plus device and batch size).
        entries: One per test: `test`, `cell`, `protocol`, `identity` and, once per protocol,
            `trial_ids` (the protocol's full trial order) and `assigned` (this shard's ids).
        elapsed_s: Wall time of the shard's session.

    Returns:
        The manifest's path.

    """
    tests: list[dict[str, Any]] = []
    identity: dict[str, Any] = {}
    protocols: dict[str, dict[str, list[Any]]] = {}
    for entry in entries:
        tests.append({"test": entry["test"], "cell": entry["cell"]})
        identity = identity or dict(entry["identity"])
        if "trial_ids" in entry:
            protocols[entry["protocol"]] = {
                "trial_ids": list(entry["trial_ids"]),
                "assigned": list(entry["assigned"]),
            }
    run_file = Path(run_dir) / RUN_FILE
    manifest = {
        "shard": shard.label,
        "index": shard.index,
        "count": shard.count,
        "run": json.loads(run_file.read_text()) if run_file.is_file() else {},
        "config": json.loads(json.dumps(config, sort_keys=True, default=str)),
        "identity": identity,
        "tests": sorted(tests, key=lambda t: (t["test"], t["cell"]["label"])),
        "protocols": dict(sorted(protocols.items())),
        "elapsed_s": round(elapsed_s, 1),
    }
    path = shard.manifest_path(run_dir)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(manifest, indent=1))
    staging.replace(path)
    return path


@dataclass(frozen=True)
class _Manifest:
    path: Path
    data: dict[str, Any]

    @property
    def shard(self) -> Shard:
        return Shard(int(self.data["index"]), int(self.data["count"]))


def _find_manifests(dirs: Sequence[Path]) -> list[_Manifest]:
    found = []
    for run_dir in dirs:
        paths = sorted(p for p in run_dir.glob(MANIFEST_GLOB) if _MANIFEST_NAME.fullmatch(p.name))
        if not paths:
            raise RecordsError(
                f"{run_dir} holds no shard manifest (shard-I-of-N.json): its shard did not "
                "finish; rerun it with the same options and --shard"
            )
        for path in paths:
            try:
                found.append(_Manifest(path, json.loads(path.read_text())))
            except (OSError, json.JSONDecodeError) as error:
                raise RecordsError(f"cannot read shard manifest {path}: {error}") from error
    return found


def _check_complete_set(manifests: Sequence[_Manifest]) -> None:
    counts = sorted({m.shard.count for m in manifests})
    if len(counts) > 1:
        listing = ", ".join(f"{m.path} ({m.shard.label})" for m in manifests)
        raise RecordsError(f"shards of different splits (N = {counts}): {listing}")
    count = counts[0]
    seen: dict[int, Path] = {}
    for manifest in manifests:
        other = seen.setdefault(manifest.shard.index, manifest.path)
        if other != manifest.path:
            raise RecordsError(
                f"shard {manifest.shard.label} appears twice: {other} and {manifest.path}"
            )
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in seen]
    if missing:
        have = ", ".join(f"{i}/{count}" for i in sorted(seen))
        raise RecordsError(
            f"missing shard(s) {', '.join(missing)} (have {have}); "
            "run them (pytest ... --shard I/N) and pass every shard's directory"
        )


def _check_same_run(manifests: Sequence[_Manifest]) -> None:
    first = manifests[0]
    for manifest in manifests[1:]:
        for part in ("run", "identity", "tests"):
            a, b = first.data[part], manifest.data[part]
            if part == "identity":
                a = {k: v for k, v in a.items() if k not in _VOLATILE_IDENTITY}
                b = {k: v for k, v in b.items() if k not in _VOLATILE_IDENTITY}
            if a != b:
                what = (
                    ", ".join(sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)))
                    if isinstance(a, dict)
                    else "the selected tests (-k / test files)"
                )
                raise RecordsError(
                    f"shard {manifest.shard.label} ({manifest.path.parent}) is not of the same "
                    f"run as shard {first.shard.label} ({first.path.parent}): {part} differs in "
                    f"{what}; rerun the shards with identical options"
                )
        for protocol, entry in manifest.data["protocols"].items():
            other = first.data["protocols"].get(protocol)
            if other is not None and other["trial_ids"] != entry["trial_ids"]:
                raise RecordsError(
                    f"shards {first.shard.label} and {manifest.shard.label} built different "
                    f"{protocol} trials (another code or stimuli version?); rerun them alike"
                )


def _protocol_orders(manifests: Sequence[_Manifest]) -> dict[str, list[str]]:
    orders: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    for manifest in manifests:
        for protocol, entry in manifest.data["protocols"].items():
            orders.setdefault(protocol, list(entry["trial_ids"]))
            for trial_id in entry["assigned"]:
                previous = owners.setdefault(trial_id, manifest.shard.label)
                if previous != manifest.shard.label:
                    raise RecordsError(
                        f"trial {trial_id} was assigned to shards {previous} and "
                        f"{manifest.shard.label}; the shards come from different code versions"
                    )
    for protocol, order in orders.items():
        unowned = [t for t in order if t not in owners]
        if unowned:
            raise RecordsError(
                f"{len(unowned)} {protocol} trials belong to no shard (e.g. {unowned[0]}); "
                "a shard ran without that protocol's tests: rerun the shards with identical options"
            )
    return orders


def _shard_records(manifest: _Manifest) -> dict[str, TrialRecord]:
    """The records of a manifest's assigned trials, complete and graded.

    Raises:
        RecordsError: When some assigned trial has no record or no grade.

    """
    store = RecordStore(manifest.path.parent)
    assigned = [t for entry in manifest.data["protocols"].values() for t in entry["assigned"]]
    records, missing = {}, []
    for trial_id in assigned:
        record = store.get(trial_id)
        if record is None or not record.judge:
            missing.append(trial_id)
        else:
            records[trial_id] = record
    if missing:
        raise RecordsError(
            f"shard {manifest.shard.label} ({manifest.path.parent}) is incomplete: "
            f"{len(missing)} of {len(assigned)} assigned trials have no graded record "
            f"(e.g. {missing[0]}); rerun it with the same options to finish it"
        )
    return records


@dataclass(frozen=True)
class MergedRun:
    """What `merge_shards` wrote."""

    out_dir: Path
    shards: tuple[str, ...]
    """Manifests folded, as `I/N (dir)`."""
    n_trials: int
    summary_path: Path | None
    n_verdicts: int


def merge_shards(
    dirs: Sequence[Path],
    out_dir: Path,
    thresholds: Mapping[str, Any],
    *,
    judge_accuracy: bool = True,
) -> MergedRun:
    """Fold finished shards into one run directory: records, `run.json`, summary and reports.

    Args:
        dirs: Directories holding the shards (one shared run dir, or one per shard).
        out_dir: Where the merged run goes (may be one of `dirs`).
        thresholds: The pass rules; their version must match the shards'.
        judge_accuracy: Measure the rule judge for the report when no shard cached it.

    Returns:
        What was written.

    Raises:
        RecordsError: For a missing, duplicate, incomplete or foreign shard, naming it.

    """
    from introspection_bench.protocols.base import Cell
    from introspection_bench.protocols.recorded import read_declarations
    from introspection_bench.runner import verdicts_from_records, write_merged_summary
    from introspection_bench.session import RunConfig

    manifests = _find_manifests([Path(d) for d in dirs])
    _check_complete_set(manifests)
    _check_same_run(manifests)
    orders = _protocol_orders(manifests)
    records: dict[str, TrialRecord] = {}
    for manifest in manifests:
        records.update(_shard_records(manifest))
    first = manifests[0].data
    identity = first["identity"]
    if identity and str(thresholds.get("version")) != identity.get("thresholds_version"):
        raise RecordsError(
            f"the shards were decided with thresholds version {identity.get('thresholds_version')}"
            f", this checkout has {thresholds.get('version')}; merge with the shards' thresholds"
        )
    ordered = [records[t] for order in orders.values() for t in order]
    out = Path(out_dir)
    RecordStore(out).claim(first["run"])
    trials_path = out / TRIALS_FILE
    staging = trials_path.with_suffix(".tmp")
    staging.write_text(
        "".join(r.to_json() + "\n" for r in sorted(ordered, key=lambda r: r.trial_id))
    )
    staging.replace(trials_path)
    config = RunConfig.from_key(first["config"])
    tests = [(t["test"], Cell(t["cell"]["layer"], t["cell"]["strength"])) for t in first["tests"]]
    summary_path = None
    if tests:
        declarations: dict[str, Any] = {}
        for manifest in manifests:  # the shards' declared protocols (the same in every shard)
            declarations |= read_declarations(manifest.path.parent)
        verdicts = verdicts_from_records(
            config,
            ordered,
            int(identity["n_layers"]),
            thresholds,
            tests=tests,
            identity=identity,
            declarations=declarations,
        )
        elapsed = max(float(m.data.get("elapsed_s", 0.0)) for m in manifests)
        for manifest in manifests:  # the shards' cached judge measurement, if any
            cached = manifest.path.parent / JUDGE_ACCURACY_FILE
            if cached.is_file() and not (out / JUDGE_ACCURACY_FILE).is_file():
                shutil.copy(cached, out / JUDGE_ACCURACY_FILE)
        summary_path = write_merged_summary(
            config,
            out,
            ordered,
            verdicts,
            elapsed_s=elapsed,
            judge_accuracy=judge_accuracy,
            declarations=declarations,
        )
    return MergedRun(
        out,
        tuple(f"{m.shard.label} ({m.path.parent})" for m in manifests),
        len(ordered),
        summary_path,
        len(tests),
    )
