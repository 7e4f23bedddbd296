"""`--shard I/N`: the split of trial groups, shard manifests, and `merge` of finished shards.

The split and the merge checks run on synthetic trials and records (no model); the end-to-end
test runs the yes-bias protocol of the default model unsharded and as two shards, and checks
that the merged run has the same records, verdicts and metrics.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from introspection_bench.chat import RenderedPrompt
from introspection_bench.cli import main
from introspection_bench.errors import ConfigError, RecordsError
from introspection_bench.protocols.base import Trial
from introspection_bench.records import RecordStore, read_records
from introspection_bench.sharding import (
    Shard,
    assign_groups,
    merge_shards,
    select_trials,
    shard_loads,
    trial_cost,
    trial_groups,
    write_manifest,
)
from tests.synthetic_runs import THRESHOLDS, make_run

ROOT = Path(__file__).resolve().parent.parent


def _trial(trial_id: str, condition: str, strength: float | None, tokens: int) -> Trial:
    prompt = RenderedPrompt("p", tuple(range(40)), {}, "chat")
    return Trial(
        trial_id=trial_id,
        protocol="exp",
        condition=condition,
        concept=None,
        layer=20,
        strength=strength,
        prompt=prompt,
        injection=None,
        injected_norm=None,
        norm_ratio=None,
        max_new_tokens=tokens,
        temperature=1.0,
        seed=0,
        grade=None,
    )


def _trials(n: int = 37) -> list[Trial]:
    rng = random.Random(0)
    out = []
    for condition in ("control", "injected", "random_vector"):
        for strength in (0.5, 1.0, 2.0):
            for i in range(n):
                out.append(
                    _trial(
                        f"exp/{condition}/s{strength}/{i}",
                        condition,
                        strength,
                        rng.choice((20, 100, 100, 256)),
                    )
                )
    return out


@pytest.mark.parametrize("text", ["1/4", "4/4", " 2 / 3 "])
def test_shard_parse(text: str) -> None:
    shard = Shard.parse(text)
    assert shard.label == text.replace(" ", "")
    assert shard.name == f"shard-{shard.index}-of-{shard.count}"


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "2", "a/b", "1/2/3"])
def test_shard_parse_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        Shard.parse(text)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_the_trials(count: int) -> None:
    trials = _trials()
    parts = [select_trials(trials, Shard(i, count)) for i in range(1, count + 1)]
    ids = [t.trial_id for part in parts for t in part]
    assert sorted(ids) == sorted(t.trial_id for t in trials)
    assert len(ids) == len(set(ids))
    for part in parts:  # a shard keeps the given order
        order = {t.trial_id: k for k, t in enumerate(trials)}
        assert [order[t.trial_id] for t in part] == sorted(order[t.trial_id] for t in part)


def test_split_is_deterministic_and_independent_of_input_order() -> None:
    trials = _trials()
    shuffled = list(trials)
    random.Random(1).shuffle(shuffled)
    for index in (1, 2, 3):
        a = {t.trial_id for t in select_trials(trials, Shard(index, 3))}
        b = {t.trial_id for t in select_trials(shuffled, Shard(index, 3))}
        assert a == b


def test_split_is_balanced_by_decode_cost() -> None:
    trials = _trials()
    groups = trial_groups(trials)
    biggest = max(sum(trial_cost(t) for t in members) for members in groups.values())
    for count in (2, 3, 4):
        loads = shard_loads(trials, count)
        mean = sum(loads) / count
        # Longest-processing-time: no shard exceeds the mean by more than one group.
        assert max(loads) - mean <= biggest
        assert max(loads) / mean < 1.1, loads


def test_groups_keep_one_condition_and_cell() -> None:
    for members in trial_groups(_trials()).values():
        assert len({(t.condition, t.strength) for t in members}) == 1
        assert 1 <= len(members) <= 8


def test_assignment_breaks_ties_by_salt() -> None:
    costs = {"a": 1.0}
    owners = {assign_groups(costs, 4, salt)["a"] for salt in ("p1", "p2", "p3", "p4", "p5", "p6")}
    assert len(owners) > 1  # one shard does not take every protocol's odd group


# -- merge on synthetic records -----------------------------------------------------------------
def _shard_dirs(tmp_path: Path, count: int, shared: bool) -> tuple[Path, list[Path]]:
    """A synthetic run (all protocols) cut into `count` shard dirs as `--shard` writes them."""
    full = make_run(tmp_path / "full", layers=(0.5,), strengths=(1.0,), trials=4)
    summary = json.loads((full / "summary.json").read_text())
    run_key = json.loads((full / "run.json").read_text())
    records = RecordStore(full).all()
    by_protocol: dict[str, list[str]] = {}
    for record in records:
        by_protocol.setdefault(record.protocol, []).append(record.trial_id)
    identity = summary["identity"]
    dirs = []
    for index in range(1, count + 1):
        shard = Shard(index, count)
        run_dir = tmp_path / ("shared" if shared else f"s{index}")
        store = RecordStore(run_dir, shard.worker(None))
        store.claim(run_key)
        entries = []
        for protocol, ids in by_protocol.items():
            mine = [t for k, t in enumerate(ids) if k % count == index - 1]
            store.append(r for r in records if r.trial_id in mine)
            tests = [v for v in summary["verdicts"] if v["protocol"] == protocol]
            for k, verdict in enumerate(tests):
                entry = {
                    "test": verdict["test"],
                    "cell": verdict["cell"],
                    "protocol": protocol,
                    "identity": identity,
                }
                if k == 0:
                    entry |= {"trial_ids": ids, "assigned": mine}
                entries.append(entry)
        write_manifest(shard, run_dir, config=summary["config"], entries=entries, elapsed_s=3.0)
        dirs.append(run_dir)
    return full, sorted(set(dirs))


def _comparable(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: summary[k] for k in ("config", "identity", "n_trials", "metrics", "verdicts")}


@pytest.mark.parametrize("shared", [False, True])
def test_merge_equals_unsharded(tmp_path: Path, shared: bool) -> None:
    full, dirs = _shard_dirs(tmp_path, 3, shared)
    merged = merge_shards(dirs, tmp_path / "merged", THRESHOLDS, judge_accuracy=False)
    assert merged.n_trials == len(RecordStore(full))
    merged_lines = (tmp_path / "merged" / "trials.jsonl").read_text().splitlines()
    assert merged_lines == sorted((full / "trials.jsonl").read_text().splitlines())
    assert _comparable(tmp_path / "merged") == _comparable(full)


def test_merge_refuses_a_missing_shard(tmp_path: Path) -> None:
    _, dirs = _shard_dirs(tmp_path, 3, shared=False)
    with pytest.raises(RecordsError, match=r"missing shard\(s\) 2/3 \(have 1/3, 3/3\)"):
        merge_shards([dirs[0], dirs[2]], tmp_path / "merged", THRESHOLDS)


def test_merge_refuses_a_shard_without_manifest(tmp_path: Path) -> None:
    _, dirs = _shard_dirs(tmp_path, 2, shared=False)
    (dirs[1] / "shard-2-of-2.json").unlink()
    with pytest.raises(RecordsError, match="s2 holds no shard manifest"):
        merge_shards(dirs, tmp_path / "merged", THRESHOLDS)


def test_merge_refuses_another_configuration(tmp_path: Path) -> None:
    _, dirs = _shard_dirs(tmp_path, 2, shared=False)
    path = dirs[1] / "shard-2-of-2.json"
    manifest = json.loads(path.read_text())
    manifest["run"]["trials"] = 5
    path.write_text(json.dumps(manifest))
    with pytest.raises(RecordsError, match=r"shard 2/2 \(.*s2\) is not of the same run.*trials"):
        merge_shards(dirs, tmp_path / "merged", THRESHOLDS)


def test_merge_refuses_another_model(tmp_path: Path) -> None:
    _, dirs = _shard_dirs(tmp_path, 2, shared=False)
    path = dirs[0] / "shard-1-of-2.json"
    manifest = json.loads(path.read_text())
    manifest["identity"]["model_fingerprint"] = "other"
    path.write_text(json.dumps(manifest))
    with pytest.raises(RecordsError, match="identity differs in model_fingerprint"):
        merge_shards(dirs, tmp_path / "merged", THRESHOLDS)


def test_merge_refuses_an_incomplete_shard(tmp_path: Path) -> None:
    _, dirs = _shard_dirs(tmp_path, 2, shared=False)
    trials = dirs[1] / "trials.shard-2-of-2.jsonl"
    lines = trials.read_text().splitlines()
    trials.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(RecordsError, match=r"shard 2/2 .* is incomplete: 3 of \d+ assigned"):
        merge_shards(dirs, tmp_path / "merged", THRESHOLDS)


def test_merge_refuses_shards_of_other_tests(tmp_path: Path) -> None:
    _, dirs = _shard_dirs(tmp_path, 2, shared=False)
    path = dirs[0] / "shard-1-of-2.json"
    manifest = json.loads(path.read_text())
    manifest["tests"] = manifest["tests"][:-1]
    path.write_text(json.dumps(manifest))
    with pytest.raises(RecordsError, match="selected tests"):
        merge_shards(dirs, tmp_path / "merged", THRESHOLDS)


def test_cli_merge_needs_out_for_several_dirs(tmp_path: Path, capsys) -> None:
    _, dirs = _shard_dirs(tmp_path, 2, shared=False)
    assert main(["merge", *map(str, dirs)]) == 2
    assert "needs --out RUN_DIR" in capsys.readouterr().err


# -- end to end on the default model -----------------------------------------------------------
def _suite(report_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "suites/test_controls.py",
        "-k",
        "yes_bias",
        "-q",
        "-p",
        "no:cacheprovider",
        "--trials",
        "2",
        "--dtype",
        "fp32",
        "--device",
        "cpu",
        "--report-dir",
        str(report_dir),
        *extra,
    ]


def _child_env() -> dict[str, str]:
    """The environment of a child pytest run: offline, and not mistaken for an xdist worker.

    Under `make test` (-n 2) this test itself runs in worker gwN; a child that inherits
    PYTEST_XDIST_WORKER would name its records as that worker's shard.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return dict(env, HF_HUB_OFFLINE="1")


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = _child_env()
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_sharded_run_merges_into_the_unsharded_run(tmp_path: Path) -> None:
    full = _run(_suite(tmp_path / "full"))
    assert full.returncode in (0, 1), full.stdout[-2000:] + full.stderr[-2000:]
    # Both shards at once into one shared run dir (as an array job starts them).
    env = _child_env()
    shards = [
        subprocess.Popen(
            _suite(tmp_path / "shared", "--shard", f"{index}/2"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in (1, 2)
    ]
    for index, shard in enumerate(shards, 1):
        output = shard.communicate()[0]
        assert shard.returncode == 0, output[-3000:]
        assert f"shard {index}/2: records and" in output
    files = sorted(p.name for p in (tmp_path / "shared").glob("*shard*"))
    assert files == [
        "shard-1-of-2.json",
        "shard-2-of-2.json",
        "trials.shard-1-of-2.jsonl",
        "trials.shard-2-of-2.jsonl",
    ]
    ids = [
        {r.trial_id for r in read_records(tmp_path / "shared" / f"trials.shard-{i}-of-2.jsonl")}
        for i in (1, 2)
    ]
    assert ids[0] and ids[1] and not ids[0] & ids[1]  # each shard ran its own part
    assert ids[0] | ids[1] == {r.trial_id for r in RecordStore(tmp_path / "full").all()}

    separate = tmp_path / "copy2"
    separate.mkdir()
    for name in ("run.json", "shard-2-of-2.json", "trials.shard-2-of-2.jsonl"):
        shutil.copy(tmp_path / "shared" / name, separate / name)
    one = tmp_path / "copy1"
    one.mkdir()
    for name in ("run.json", "shard-1-of-2.json", "trials.shard-1-of-2.jsonl"):
        shutil.copy(tmp_path / "shared" / name, one / name)

    merged = _run(
        [
            sys.executable,
            "-m",
            "introspection_bench.cli",
            "merge",
            str(one),
            str(separate),
            "--out",
            str(tmp_path / "merged"),
            "--no-judge-accuracy",
        ]
    )
    assert merged.returncode == 0, merged.stderr
    assert "merged 2 shards" in merged.stdout
    assert (tmp_path / "merged" / "trials.jsonl").read_text() == (
        tmp_path / "full" / "trials.jsonl"
    ).read_text()
    assert _comparable(tmp_path / "merged") == _comparable(tmp_path / "full")
    assert (tmp_path / "merged" / "report.html").is_file()

    missing = _run(
        [
            sys.executable,
            "-m",
            "introspection_bench.cli",
            "merge",
            str(one),
            "--out",
            str(tmp_path / "m2"),
        ]
    )
    assert missing.returncode == 2
    assert "missing shard(s) 2/2 (have 1/2)" in missing.stderr
