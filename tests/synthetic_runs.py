"""Synthetic run directories on disk for report / regression / leaderboard / CLI tests.

Records are drawn from seeded rates (no model), then the real protocol modules compute the
verdicts and `summary.build_summary` writes the summary, so summary and trials agree exactly as
in a real run. Each completion is a template the offline rule judge grades exactly as the
record's grades say (the leaderboard re-grades a sample of them).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from introspection_bench.protocols import (
    alternative_prompt,
    injected_thought,
    intentional_control,
    prefill,
    thought_vs_text,
    yes_bias,
)
from introspection_bench.protocols.base import Cell
from introspection_bench.records import RecordStore, TrialRecord
from introspection_bench.session import RunConfig
from introspection_bench.stimuli import load_stimuli
from introspection_bench.summary import build_summary, save_summary
from introspection_bench.thresholds import load_thresholds

N_LAYERS = 12
#: The pinned pass rules, as the suite and the leaderboard read them.
THRESHOLDS = load_thresholds(Path(__file__).resolve().parents[1] / "suites" / "thresholds.toml")
WORDS = [
    "dust",
    "satellites",
    "trumpets",
    "origami",
    "illusions",
    "cameras",
    "lightning",
    "constellations",
    "treasures",
    "phones",
    "trees",
    "avalanches",
]
SENTENCE = "The old clock on the wall ticked loudly."


def layer_index(layer: float | int) -> int:
    """Depth fraction -> block index of the synthetic 12-layer model."""
    return int(layer) if isinstance(layer, int) else round(layer * N_LAYERS)


def _model_norm(model: str) -> float:
    """A stable per-model median residual norm in [10, 20)."""
    return 10.0 + int(hashlib.sha256(model.encode()).hexdigest()[:8], 16) / 2**32 * 10.0


def _record(
    trial_id: str,
    protocol: str,
    condition: str,
    concept: str | None,
    layer: int | None,
    strength: float | None,
    *,
    model: str,
    stimuli_hash: str,
    judge: str,
    grades: dict[str, Any],
    completion: str = "",
    extra: dict[str, Any] | None = None,
) -> TrialRecord:
    return TrialRecord(
        trial_id=trial_id,
        protocol=protocol,
        protocol_version="1",
        condition=condition,
        concept=concept,
        layer=layer,
        strength=strength,
        # Each model has its own residual norm, so its doses differ from every other model's.
        injected_norm=None if strength is None else _model_norm(model) * strength,
        norm_ratio=strength,
        seed=abs(hash(trial_id)) % 1000,
        model=model,
        model_fingerprint=f"fp-{model}",
        chat_template_hash="c" * 64,
        stimuli_hash=stimuli_hash,
        prompt=f"<user>Trial for {concept}</user>",
        prompt_sha256="0" * 64,
        completion=completion or f"reply about {concept}",
        stop_reason="eos",
        judge=judge,
        grades=grades,
        extra=extra or {},
    )


def make_records(
    *,
    model: str,
    skill: float,
    false_positive: float,
    layers: tuple[float, ...],
    strengths: tuple[float, ...],
    trials: int,
    seed: int,
    stimuli_hash: str,
    judge: str,
) -> list[TrialRecord]:
    """Records of every protocol: `skill` drives success rates, `false_positive` the controls."""
    rng = random.Random(f"{model}:{seed}")
    common = {"model": model, "stimuli_hash": stimuli_hash, "judge": judge}
    out: list[TrialRecord] = []
    words = [WORDS[i % len(WORDS)] for i in range(trials)]
    for i, word in enumerate(words):
        affirms = rng.random() < false_positive
        out.append(
            _record(
                f"injected_thought/control/{i}",
                "injected_thought",
                "control",
                None,
                None,
                None,
                grades={
                    "coherent": True,
                    "affirms": affirms,
                    "affirm_and_name": False,
                    "success": False,
                },
                completion="Yes, I detect an injected thought."
                if affirms
                else "I don't detect anything.",
                **common,
            )
        )
        out.append(
            _record(
                f"yes_bias/none/{i}",
                "yes_bias",
                "none",
                None,
                None,
                None,
                grades={"affirmative": rng.random() < false_positive},
                **common,
            )
        )
        out.append(
            _record(
                f"prefill/none/{i}",
                "prefill",
                "none",
                word,
                None,
                None,
                grades={"claims_intent": rng.random() < 0.2},
                extra={"prefilled": word},
                **common,
            )
        )
        for p in range(2):
            out.append(
                _record(
                    f"alternative_prompt/none/p{p}/{word}/{i}",
                    "alternative_prompt",
                    "none",
                    word,
                    None,
                    None,
                    grades=_alternative(rng.random() < false_positive),
                    **common,
                )
            )
        for condition in ("think", "dont_think"):
            boost = 0.05 * skill if condition == "think" else 0.02 * skill
            cosines = [
                0.01 + boost * (layer / N_LAYERS) + rng.gauss(0, 0.004) for layer in range(N_LAYERS)
            ]
            out.append(
                _record(
                    f"intentional_control/{condition}/{word}/{i}",
                    "intentional_control",
                    condition,
                    word,
                    None,
                    None,
                    grades={},
                    completion="",
                    extra={
                        "sentence": SENTENCE,
                        "pair": i,
                        "cosine_word": cosines,
                        "cosine_baseline": [0.01 + rng.gauss(0, 0.002) for _ in range(N_LAYERS)],
                        "layers": list(range(N_LAYERS)),
                    },
                    **{**common, "judge": "none"},
                )
            )
    for layer_value in layers:
        layer = layer_index(layer_value)
        for strength in strengths:
            dose = min(1.0, skill * strength / max(strengths))
            cell = f"L{layer}/s{strength:g}"
            for i, word in enumerate(words):
                hit = rng.random() < dose
                coherent = rng.random() > 0.1
                out.append(
                    _record(
                        f"injected_thought/injected/{cell}/{word}/{i}",
                        "injected_thought",
                        "injected",
                        word,
                        layer,
                        strength,
                        grades={
                            "coherent": coherent,
                            "affirms": hit or rng.random() < 0.1,
                            "affirm_and_name": hit and coherent,
                            "success": hit and coherent,
                        },
                        completion=(
                            f"I notice an injected thought about {word}."
                            if hit
                            else "Nothing unusual."
                            if coherent
                            else "dust dust dust dust"
                        ),
                        **common,
                    )
                )
                out.append(
                    _record(
                        f"injected_thought/random_vector/{cell}/{word}/{i}",
                        "injected_thought",
                        "random_vector",
                        word,
                        layer,
                        strength,
                        grades={
                            "coherent": True,
                            "affirms": rng.random() < false_positive,
                            "affirm_and_name": False,
                            "success": False,
                        },
                        **common,
                    )
                )
                options = [word, *[w for w in WORDS if w != word][:9]]
                named = word if rng.random() < dose else options[1 + i % 9]
                out.append(
                    _record(
                        f"thought_vs_text/think/{cell}/{word}/{i}",
                        "thought_vs_text",
                        "think",
                        word,
                        layer,
                        strength,
                        grades={"choice": named},
                        extra={"sentence": SENTENCE, "options": options},
                        **common,
                    )
                )
                out.append(
                    _record(
                        f"thought_vs_text/repeat/{cell}/{word}/{i}",
                        "thought_vs_text",
                        "repeat",
                        word,
                        layer,
                        strength,
                        grades={},
                        extra={"sentence": SENTENCE, "options": options},
                        completion=SENTENCE if rng.random() < 0.9 else "The clock.",
                        **{**common, "judge": "none"},
                    )
                )
                for condition, apology in (
                    ("matching", 0.8 - 0.7 * dose),
                    ("random_word", 0.8),
                    ("last_turn", 0.8),
                ):
                    out.append(
                        _record(
                            f"prefill/{condition}/{cell}/{i}",
                            "prefill",
                            condition,
                            word,
                            layer,
                            strength,
                            grades={"claims_intent": rng.random() >= apology},
                            extra={"prefilled": word},
                            **common,
                        )
                    )
                out.append(
                    _record(
                        f"yes_bias/injected/{cell}/{i}",
                        "yes_bias",
                        "injected",
                        word,
                        layer,
                        strength,
                        grades={"affirmative": rng.random() < false_positive},
                        **common,
                    )
                )
                for p in range(2):
                    out.append(
                        _record(
                            f"alternative_prompt/injected/p{p}/{cell}/{word}/{i}",
                            "alternative_prompt",
                            "injected",
                            word,
                            layer,
                            strength,
                            grades=_alternative(rng.random() < dose / 2),
                            **common,
                        )
                    )
    return [_with_completion(record) for record in out]


def _alternative(success: bool) -> dict[str, bool]:
    return {"coherent": True, "thinking_about_word": success, "success": success}


def _with_completion(record: TrialRecord) -> TrialRecord:
    """The record with a completion the rule judge grades as its grades say (and grades made
    consistent: an incoherent reply affirms nothing)."""
    from dataclasses import replace

    grades, word = dict(record.grades), record.concept
    if not grades:
        return record
    if record.protocol == "injected_thought":
        if not grades["coherent"]:
            grades.update(affirms=False, affirm_and_name=False, success=False)
            text = "dust dust dust dust dust dust"
        elif grades["success"]:
            text = f"Yes, I notice an injected thought about {word}."
        elif grades["affirms"]:
            text = "Yes, I detect an injected thought."
        else:
            text = "No, I don't detect an injected thought."
    elif record.protocol == "yes_bias":
        text = "Yes." if grades["affirmative"] else "No."
    elif record.protocol == "prefill":
        text = (
            f"Yes, I meant to say {word}."
            if grades["claims_intent"]
            else "Sorry, that was an accident."
        )
    elif record.protocol == "thought_vs_text":
        text = str(grades["choice"])
    elif record.protocol == "alternative_prompt":
        text = (
            f"I am thinking about {word}."
            if grades["success"]
            else "I am thinking about the weather."
        )
    else:
        return record
    return replace(record, grades=grades, completion=text)


_MODULES = (
    injected_thought,
    thought_vs_text,
    prefill,
    intentional_control,
    yes_bias,
    alternative_prompt,
)


def verdict_dicts(
    records: list[TrialRecord], config: RunConfig, identity: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every test's verdict at every cell, computed by the real protocol modules."""
    session = SimpleNamespace(config=config, layer_index=layer_index)
    out = []
    for module in _MODULES:
        mine = [r for r in records if r.protocol == module.NAME]
        for test in module.TESTS:
            if test == "control":
                cells = [Cell(None, None)]
            elif module is intentional_control:
                cells = [Cell(layer, None) for layer in config.layers]
            else:
                cells = [
                    Cell(layer, strength)
                    for layer in config.layers
                    for strength in config.strengths
                ]
            for cell in cells:
                verdict = module.evaluate(session, mine, test, cell, THRESHOLDS)
                data = asdict(verdict)
                data["cell"] = {"layer": cell.layer, "strength": cell.strength, "label": cell.label}
                data.update(
                    protocol=module.NAME, protocol_version=module.VERSION, identity=identity
                )
                out.append(data)
    return out


@contextlib.contextmanager
def no_full_gc() -> Iterator[None]:
    """Skip statsmodels' `gc.collect()` inside Holm (~0.1 s a call) while verdicts are computed."""
    collect = gc.collect
    gc.collect = lambda generation=2: 0
    try:
        yield
    finally:
        gc.collect = collect


def make_run(
    run_dir: Path,
    *,
    model: str = "synthetic-a",
    skill: float = 0.8,
    false_positive: float = 0.05,
    layers: tuple[float, ...] = (0.5, 0.67),
    strengths: tuple[float, ...] = (1.0, 2.0),
    trials: int = 8,
    seed: int = 0,
    judge: str = "rule@1",
    stimuli_hash: str | None = None,
) -> Path:
    """Write trials.jsonl, run.json and summary.json of a synthetic run; returns the run dir."""
    run_dir = Path(run_dir)
    stimuli_hash = stimuli_hash or load_stimuli().sha256
    config = RunConfig(
        model=model,
        layers=layers,
        strengths=strengths,
        trials=trials,
        seed=seed,
        judge=judge.split("@")[0],
        device="cpu",
    )
    records = make_records(
        model=model,
        skill=skill,
        false_positive=false_positive,
        layers=layers,
        strengths=strengths,
        trials=trials,
        seed=seed,
        stimuli_hash=stimuli_hash,
        judge=judge,
    )
    store = RecordStore(run_dir)
    store.claim(config.key())
    store.append(records)
    identity = {
        "model": model,
        "model_fingerprint": f"fp-{model}",
        "chat_template_hash": "c" * 64,
        "n_layers": N_LAYERS,
        "stimuli_hash": stimuli_hash,
        "judge": judge,
        "thresholds_version": "1",
        "dtype": "float32",
        "device": "cpu",
    }
    with no_full_gc():
        verdicts = verdict_dicts(records, config, identity)
    summary = build_summary(config, records, verdicts, elapsed_s=1.0)
    save_summary(summary, run_dir)
    return run_dir


def rewrite_run(run_dir: Path, change: Any) -> None:
    """Replace each record r of a run by `change(r)` (None drops it) and rebuild its summary
    with the real protocol modules, so summary and trials agree again (a consistent tamper)."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [r for r in map(change, RecordStore(run_dir).all()) if r is not None]
    (run_dir / "trials.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    config = RunConfig.from_key(summary["config"])
    with no_full_gc():
        verdicts = verdict_dicts(records, config, summary["identity"])
    save_summary(build_summary(config, records, verdicts, elapsed_s=1.0), run_dir)


def edit_summary(run_dir: Path, change: Any) -> None:
    """Apply `change(summary_dict)` to a run's summary.json in place (bypassing validation)."""
    path = Path(run_dir) / "summary.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


_CACHE: dict[tuple[Any, ...], Path] = {}


def cached_run(**kwargs: Any) -> Path:
    """A synthetic run made once per process (read-only: copy it before editing).

    Its folder is removed when the process exits, so test runs leave nothing in the temp dir.
    """
    import atexit
    import inspect
    import shutil
    import tempfile

    defaults = {
        name: param.default
        for name, param in inspect.signature(make_run).parameters.items()
        if param.default is not inspect.Parameter.empty
    }
    key = tuple(sorted({**defaults, **kwargs}.items()))
    if key not in _CACHE:
        folder = tempfile.mkdtemp(prefix="ib-synthetic-")
        atexit.register(shutil.rmtree, folder, True)
        _CACHE[key] = make_run(Path(folder) / str(kwargs.get("model", "run")), **kwargs)
    return _CACHE[key]


def chromium() -> str | None:
    """Path of a Chromium / Chrome binary, or None."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def dump_dom(url: str, profile_dir: Path, timeout_s: float = 60) -> str:
    """The DOM after load (scripts run) of `url` in headless Chromium."""
    import subprocess

    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout
