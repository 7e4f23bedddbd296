"""An interrupted suite run loses nothing finished, and a rerun does not recompute it.

End to end on the real default model: the yes-bias protocol with 4 trials per condition is
killed (SIGKILL) as soon as its first records are on disk. Rows can finish in the same decode
step, so the kill may land after more records than wanted: the file is then cut back to its
first two records plus a torn half line, which is exactly what an interrupt leaves (records are
appended one by one). A finished record is marked with a sentinel completion; the rerun must keep
the sentinel (it resumed instead of regenerating) and finish and grade every trial. A rerun with
another configuration in the same directory is refused.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "SENTINEL: written before the interrupt"


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
        "4",
        "--report-dir",
        str(report_dir),
        *extra,
    ]


def _records(path: Path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


@pytest.mark.slow
def test_interrupted_run_resumes_without_recomputing(tmp_path):
    report_dir = tmp_path / "run"
    trials = report_dir / "trials.jsonl"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        _suite(report_dir),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not _records(trials) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = _records(trials)
    assert before, "no record reached the disk before the interrupt"
    kept = [json.dumps(r) for r in before[:2]]
    marked = dict(before[0], completion=SENTINEL)
    torn = json.dumps(before[-1])[:40]
    trials.write_text("\n".join([*kept, json.dumps(marked), torn]))

    done = subprocess.run(_suite(report_dir), cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    after = {r["trial_id"]: r for r in _records(trials)}
    assert len(after) == 12  # 4 questions uninjected + 4 x 2 strengths injected
    assert after[marked["trial_id"]]["completion"] == SENTINEL
    assert all(r["judge"] for r in after.values()), "every trial is graded after the rerun"

    refused = subprocess.run(
        _suite(report_dir, "--trials", "5"), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert (
        "holds a run with another configuration (differs in: trials)"
        in refused.stdout + refused.stderr
    )
