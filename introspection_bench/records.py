"""Trial records on disk: one JSON line per finished trial, resumable, one config per run dir.

`reports/<run>/trials.jsonl` is appended and flushed record by record, so an interrupt (Ctrl-C,
a killed process) loses at most the trial being written; a torn last line is ignored on read.
`reports/<run>/run.json` holds the configuration key: re-running with another configuration in
the same directory is refused. Under pytest-xdist each worker appends its own shard
(`trials.<worker>.jsonl`) and the controller merges them. Re-graded copies of a run's trials
(`trials.<judge>@<version>.jsonl`) sit beside them and are never read as shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from introspection_bench.errors import RecordsError

RECORD_SCHEMA_VERSION = 1
TRIALS_FILE = "trials.jsonl"
RUN_FILE = "run.json"


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """Everything about one trial: identity, configuration, prompt, completion and grades."""

    trial_id: str
    """Stable id, e.g. `injected_thought/L20/s0.5/injected/dust/0`; seeds derive from it."""
    protocol: str
    """Protocol module that built the trial (e.g. `injected_thought`)."""
    protocol_version: str
    condition: str
    """Condition inside the protocol (e.g. `injected`, `control`, `random_vector`)."""
    concept: str | None
    """Injected / prefilled / instructed word, lowercase."""
    layer: int | None
    strength: float | None
    """Dose as configured (raw multiplier or fraction of the median residual norm)."""
    injected_norm: float | None
    """L2 norm of the vector actually added."""
    norm_ratio: float | None
    """`injected_norm` over the median residual norm at `layer` (position 0 excluded)."""
    seed: int
    model: str
    model_fingerprint: str
    chat_template_hash: str
    stimuli_hash: str
    prompt: str
    prompt_sha256: str
    completion: str
    stop_reason: str
    judge: str
    """Grader as `name@version`."""
    grades: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    """Generation or grading failure; the trial is kept, not dropped."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Protocol-specific data (options, sentence, question, cosines)."""
    schema_version: int = RECORD_SCHEMA_VERSION

    def to_json(self) -> str:
        """One JSON line, fields in declaration order."""
        return json.dumps(asdict(self), ensure_ascii=False, default=float)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        """Build from a parsed JSON line.

        Raises:
            RecordsError: When required fields are missing.

        """
        if not isinstance(data, Mapping):
            raise RecordsError(f"a trial record must be a JSON object, not {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        try:
            record = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as error:
            raise RecordsError(f"malformed trial record {str(data)[:120]}...: {error}") from error
        wrong = [
            f"{name} is {type(getattr(record, name)).__name__}, not {kind.__name__}"
            for name, kind in _FIELD_TYPES
            if not isinstance(getattr(record, name), kind)
        ]
        if wrong:
            raise RecordsError(f"malformed trial record {record.trial_id!r}: {'; '.join(wrong)}")
        return record


#: Fields whose type the code reading records relies on (checked on read).
_FIELD_TYPES: tuple[tuple[str, type], ...] = (
    ("trial_id", str),
    ("protocol", str),
    ("condition", str),
    ("prompt", str),
    ("completion", str),
    ("judge", str),
    ("grades", Mapping),
    ("evidence", Mapping),
    ("extra", Mapping),
)


def read_records(path: Path) -> Iterator[TrialRecord]:
    """Records of one JSONL file; a torn final line (interrupted write) is skipped."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                return  # the write was interrupted; that trial reruns
            raise RecordsError(
                f"{path}:{number} is not valid JSON ({error}); remove the line to resume"
            ) from error
        if not isinstance(data, dict):
            raise RecordsError(
                f"{path}:{number} holds a JSON {type(data).__name__}, not a trial record object; "
                "remove the line (each line must be one record written by the suite)"
            )
        try:
            record = TrialRecord.from_dict(data)
        except RecordsError as error:
            raise RecordsError(f"{path}:{number}: {error}") from error
        yield record


def _drop_torn_tail(path: Path) -> None:
    """Cut a half-written last line (an interrupted append) so the next record starts clean."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


class RecordStore:
    """The records of one run directory (all shards), appended as trials finish."""

    def __init__(self, run_dir: Path, worker: str | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / (
            TRIALS_FILE if worker in (None, "master") else f"trials.{worker}.jsonl"
        )
        self._records: dict[str, TrialRecord] = {}
        for shard in self.shard_paths():
            for record in read_records(shard):
                self._records[record.trial_id] = record

    def shard_paths(self) -> list[Path]:
        """The main trials file and every worker shard, in a stable order.

        Re-graded copies (`trials.<judge>@<version>.jsonl`, written by `introspection-bench
        regrade`) are not shards: a worker id never contains "@".
        """
        return sorted(p for p in self.run_dir.glob("trials*.jsonl") if "@" not in p.name)

    def claim(self, config: Mapping[str, Any]) -> None:
        """Bind the run dir to `config`, or refuse a different one already there.

        Raises:
            RecordsError: When the directory holds trials of another configuration.

        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        run_file = self.run_dir / RUN_FILE
        wanted = json.loads(json.dumps(config, sort_keys=True, default=str))
        if run_file.is_file():
            existing = json.loads(run_file.read_text())
            if existing != wanted:
                changed = sorted(
                    k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k)
                )
                raise RecordsError(
                    f"{self.run_dir} holds a run with another configuration "
                    f"(differs in: {', '.join(changed)}); "
                    "use a new --report-dir, or delete the directory to start over"
                )
            return
        # Shards sharing a run dir claim it at once: each stages its own file (same content).
        staging = run_file.with_suffix(f".{os.uname().nodename}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(wanted, indent=2, sort_keys=True))
        staging.replace(run_file)

    def get(self, trial_id: str) -> TrialRecord | None:
        """The finished record of `trial_id`, if any."""
        return self._records.get(trial_id)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def all(self) -> list[TrialRecord]:
        """Every finished record."""
        return list(self._records.values())

    def append(self, records: Iterable[TrialRecord]) -> None:
        """Write records durably (flush + fsync) and remember them."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(record.to_json() + "\n")
                self._records[record.trial_id] = record
            handle.flush()
            os.fsync(handle.fileno())

    def merge_shards(self) -> Path:
        """Fold worker shards into `trials.jsonl` (controller only); returns its path."""
        main = self.run_dir / TRIALS_FILE
        merged = {r.trial_id: r for shard in self.shard_paths() for r in read_records(shard)}
        staging = main.with_suffix(".tmp")
        staging.write_text(
            "".join(r.to_json() + "\n" for r in sorted(merged.values(), key=lambda r: r.trial_id))
        )
        staging.replace(main)
        for shard in self.shard_paths():
            if shard != main:
                shard.unlink()
        self._records = merged
        return main
