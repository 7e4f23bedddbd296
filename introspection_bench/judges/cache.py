"""A verdict cache on disk, one JSON file per content hash, usable by any judge.

Keys are SHA-256 hashes of a canonical JSON rendering of whatever decides a verdict (for the LLM
judges: the judge model, the prompt version and the request). Each entry is written to a temporary
file in the same folder and moved into place with `os.replace`, so a reader never sees half an
entry and concurrent writers (threads of one process, or several processes) cannot corrupt one:
the last complete write wins, and for a deterministic judge every write of a key is the same.

Only successful verdicts belong here: a judge failure is never stored, so a re-run retries it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from introspection_bench.judges.base import Grade, GradeRequest

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: Where verdicts go when no folder is given: `verdicts/` under the project's cache root,
#: `$INTROSPECTION_BENCH_CACHE`, else `$XDG_CACHE_HOME/introspection_bench` (`~/.cache/...`).
CACHE_ENV = "INTROSPECTION_BENCH_CACHE"


def default_cache_dir() -> Path:
    """Return the verdict folder used when a judge is given no `cache_dir`."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "introspection_bench"
        )
    return Path(root) / "verdicts"


def content_key(*parts: Any) -> str:
    """Hash `parts`, rendered as canonical JSON (dataclasses as dicts), to a SHA-256 hex key."""
    # The parts are values: a dataclass among them is an instance, never the class itself.
    rendered = json.dumps(
        [
            dataclasses.asdict(cast("DataclassInstance", p)) if dataclasses.is_dataclass(p) else p
            for p in parts
        ],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=list,
    )
    return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


class VerdictCache:
    """Successful grades on disk, keyed by content hash: `<dir>/<key[:2]>/<key>.json`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """Open (and create if needed) the cache folder `directory`."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Grade | None:
        """Return the grade cached under `key`, or None when absent or unreadable."""
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            return Grade(
                criteria=data["criteria"],
                judge=data["judge"],
                evidence=data.get("evidence", {}),
                raw=data.get("raw"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, grade: Grade) -> None:
        """Store `grade` under `key` atomically; a grade with `error` set is refused."""
        if grade.error is not None:
            raise ValueError("a failed grade is never cached (so a re-run retries it)")
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "criteria": dict(grade.criteria),
            "judge": grade.judge,
            "evidence": dict(grade.evidence),
            "raw": grade.raw,
        }
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(payload, stream, ensure_ascii=False, sort_keys=True)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def __contains__(self, key: object) -> bool:
        """Whether an entry for `key` exists."""
        return isinstance(key, str) and self._path(key).is_file()

    def __len__(self) -> int:
        """Count the entries."""
        return sum(1 for _ in self.directory.glob("??/*.json"))


def split_cached(
    cache: VerdictCache | None, requests: Sequence[GradeRequest], key: Callable[[GradeRequest], str]
) -> tuple[list[Grade | None], list[int]]:
    """Cached grades in request order (None where missing) and the indices still to grade."""
    grades: list[Grade | None] = [None] * len(requests)
    todo: list[int] = []
    for index, request in enumerate(requests):
        cached = cache.get(key(request)) if cache else None
        if cached is not None:
            grades[index] = cached
        else:
            todo.append(index)
    return grades, todo
