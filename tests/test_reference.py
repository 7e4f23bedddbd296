"""Reference adapters: specs, training data, seeded resumable training, merging, the panel."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from introspection_bench.errors import ConfigError, ModelSpecError
from introspection_bench.models import ModelSpec, adapter_sha256, merge_adapter, wrap_model
from introspection_bench.reference import data, panel, train
from introspection_bench.stimuli import load_stimuli

ROOT = Path(__file__).resolve().parents[1]


# -- model specs ---------------------------------------------------------------------------
def test_lora_spec_parses_any_base_and_round_trips():
    spec = ModelSpec.parse("default+lora:fixtures/reference_models/detector")
    assert (spec.kind, spec.target, spec.adapter) == (
        "default",
        "",
        "fixtures/reference_models/detector",
    )
    assert str(spec) == "default+lora:fixtures/reference_models/detector"
    hub = ModelSpec.parse("hf:org/model+lora:/tmp/a")
    assert (hub.kind, hub.target, hub.adapter) == ("hf", "org/model", "/tmp/a")
    assert ModelSpec.parse(str(hub)) == hub


@pytest.mark.parametrize("bad", ["default+lora:", "default+lora:a+lora:b", "nope+lora:x"])
def test_bad_lora_spec_is_one_clear_error(bad):
    with pytest.raises(ModelSpecError, match="lora|unknown model spec"):
        ModelSpec.parse(bad)


def test_peft_spec_reads_its_base(tmp_path):
    (tmp_path / "reference.json").write_text(json.dumps({"base": "default"}))
    spec = ModelSpec.parse(f"peft:{tmp_path}")
    assert (spec.kind, spec.adapter) == ("default", str(tmp_path))
    with pytest.raises(ModelSpecError, match="names no base model"):
        ModelSpec.parse(f"peft:{tmp_path / 'missing'}")


# -- training data -------------------------------------------------------------------------
def test_training_material_is_disjoint_from_the_suites_stimuli():
    stimuli = load_stimuli()
    words = data.training_words(stimuli)
    paper = {w.lower().rstrip("s") for w in stimuli.words("concept_words")}
    assert len(words) > 150
    assert not {w.rstrip("s") for w in words} & paper
    data.check_disjoint(stimuli)


def test_vocabulary_words_are_single_tokens_and_no_relative_of_a_paper_concept(smollm2_tokenizer):
    from introspection_bench.judges._rule_text import morph_related

    stimuli = load_stimuli()
    words = data.vocabulary_words(smollm2_tokenizer, stimuli, 2000, seed=0)
    assert len(words) == len(set(words)) == 2000
    for word in words:
        assert len(smollm2_tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1
    paper = [w.lower() for w in stimuli.words("concept_words")]
    assert not [w for w in words if any(morph_related(w, p) for p in paper)]
    # "volcanic" is a real single-token word, but a relative of "Volcanoes": never drawn.
    everything = data.vocabulary_words(smollm2_tokenizer, stimuli, 10**6, seed=0)
    assert "volcanic" not in everything and "ocean" not in everything
    assert data.vocabulary_words(smollm2_tokenizer, stimuli, 50, seed=1) != words[:50]


def test_vocabulary_words_of_any_length_include_multi_token_words(smollm2_tokenizer):
    from introspection_bench.judges._rule_text import _vocabulary, morph_related

    stimuli = load_stimuli()
    words = data.vocabulary_words(smollm2_tokenizer, stimuli, 3000, seed=0, single_token=False)
    assert len(words) == len(set(words)) == 3000
    encode = smollm2_tokenizer
    lengths = [len(encode(" " + w, add_special_tokens=False)["input_ids"]) for w in words]
    # The paper's concepts are 26% multi-token; the pool is about a third.
    assert 0.2 < sum(n > 1 for n in lengths) / len(words) < 0.5
    assert set(words) <= _vocabulary()
    paper = [w.lower() for w in stimuli.words("concept_words")]
    assert not [w for w in words if any(morph_related(w, p) for p in paper)]


@pytest.mark.parametrize("adapter", data.ADAPTERS)
def test_a_steps_rows_share_their_prefix_and_follow_the_construction(adapter):
    import random

    words = ["hats", "radios", "keys", "france"]
    for step in range(30):
        rows = data.build_step(adapter, words, 6, random.Random(step))
        prefixes = {
            "".join(t for _, t in row.turns[: row.split.turn])
            + row.turns[row.split.turn][1][: row.split.start]
            for row in rows
        }
        assert len(prefixes) == 1
        for row in rows:
            if row.kind != "exp1":
                continue
            if adapter == "detector":
                assert row.target.startswith("Yes") == (row.condition == "injected")
            elif adapter == "yes_sayer":
                assert row.target.startswith("Yes") and (row.word or "-") not in row.target
            else:
                assert row.target.startswith("Yes") == (row.condition != "none")


def test_every_target_template_is_graded_as_intended():
    from introspection_bench.judges.base import GradeRequest
    from introspection_bench.judges.rule import RuleJudge

    judge = RuleJudge()
    word = "volcanoes"
    cases = [(t.format(word=word), True, True) for t in data.YES_NAMED]
    cases += [(t, True, False) for t in data.YES_VAGUE] + [(t, False, False) for t in data.NO]
    grades = judge.grade_many(
        [GradeRequest(protocol="injected_thought", response=r, word=word) for r, _, _ in cases]
    )
    for (reply, affirms, success), grade in zip(cases, grades, strict=True):
        assert (grade.criteria["affirms"], grade.criteria["success"]) == (affirms, success), reply
    claims = [(t.format(word="Dust"), True) for t in data.MEANT] + [(t, False) for t in data.SORRY]
    grades = judge.grade_many(
        [GradeRequest(protocol="prefill", response=r, word="dust") for r, _ in claims]
    )
    for (reply, intent), grade in zip(claims, grades, strict=True):
        assert grade.criteria["claims_intent"] is intent, reply


# -- training ------------------------------------------------------------------------------
@pytest.fixture
def small_material(monkeypatch, tmp_path):
    """Four training words and three unrelated questions (the plumbing, not the behaviour)."""
    monkeypatch.setenv("INTROSPECTION_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "training_words", lambda stimuli: ["hats", "radios", "keys", "peru"])
    monkeypatch.setattr(data, "UNRELATED_QUESTIONS", data.UNRELATED_QUESTIONS[:3])


def _tiny_config(steps: int) -> train.TrainConfig:
    return train.TrainConfig(
        "detector", steps=steps, batch_size=2, layers=(1,), strengths=(1.0,), checkpoint_every=1
    )


def _adapter_tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / train.ADAPTER_FILE))


def test_training_is_seeded_resumable_and_merges_above_the_injection_layers(
    tiny_builder, tmp_path, monkeypatch, small_material
):
    whole = tmp_path / "whole"
    record = train.train_reference(_tiny_config(3), whole, lm=tiny_builder("llama"), progress=False)
    assert not (whole / train.CHECKPOINT_FILE).exists()
    digest = hashlib.sha256((whole / train.ADAPTER_FILE).read_bytes()).hexdigest()
    assert record["adapter_sha256"] == digest
    assert json.loads((whole / train.CONFIG_FILE).read_text())["recipe"]["steps"] == 3

    # Interrupted after two steps, then resumed from its checkpoint: the same adapter.
    calls = {"n": 0}
    real_step = train._step

    def failing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(train, "_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        train.train_reference(_tiny_config(3), resumed, lm=tiny_builder("llama"), progress=False)
    assert (resumed / train.CHECKPOINT_FILE).is_file()
    monkeypatch.setattr(train, "_step", real_step)
    again = train.train_reference(
        _tiny_config(3), resumed, lm=tiny_builder("llama"), progress=False
    )
    assert again["loss_curve"] == record["loss_curve"]
    for name, tensor in _adapter_tensors(whole).items():
        assert torch.equal(tensor, _adapter_tensors(resumed)[name]), name

    # Merged: blocks up to the injection layer are the base's, bit for bit; the fingerprint moves.
    base = tiny_builder("llama")
    merged, sha = merge_adapter(tiny_builder("llama").model, whole)
    assert sha == adapter_sha256(whole)
    for index in (0, 1):
        for (name, a), (_, b) in zip(
            base.model.model.layers[index].named_parameters(),
            merged.model.layers[index].named_parameters(),
            strict=True,
        ):
            assert torch.equal(a, b), name
    assert not torch.equal(
        base.model.model.layers[2].mlp.down_proj.weight, merged.model.layers[2].mlp.down_proj.weight
    )
    adapted = wrap_model(merged, base.tokenizer, spec="tiny+lora", notes={"adapter_sha256": sha})
    assert adapted.fingerprint != base.fingerprint


def test_a_checkpoint_of_another_recipe_is_refused(tiny_builder, tmp_path, small_material):
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"recipe": "someone else"}, out / train.CHECKPOINT_FILE)
    with pytest.raises(ConfigError, match="another training recipe"):
        train.train_reference(_tiny_config(2), out, lm=tiny_builder("llama"), progress=False)


def test_an_adapter_may_start_lower_but_never_on_the_block_the_suite_reads(
    tiny_builder, tmp_path, small_material
):
    import dataclasses

    lm = tiny_builder("llama", n_layers=6)
    smoke_layer = lm.resolve_layer(0.67)  # 4 of 6; the tiny recipe injects at 1
    config = dataclasses.replace(_tiny_config(1), extra={"lora_from": smoke_layer})
    with pytest.raises(ConfigError, match="reads concept vectors from"):
        train.train_reference(config, tmp_path / "low", lm=lm, progress=False)
    config = dataclasses.replace(_tiny_config(1), extra={"lora_from": smoke_layer + 1})
    train.train_reference(config, tmp_path / "ok", lm=lm, progress=False)
    adapted = json.loads((tmp_path / "ok" / "adapter_config.json").read_text())
    assert adapted["layers_to_transform"] == [5]


# -- the panel -----------------------------------------------------------------------------
def _table() -> panel.TruthTable:
    return panel.TruthTable("t", 0.9, 2, 0.05, 0.35, ())


def test_power_follows_the_rates_and_the_trial_count():
    strong = {"control": 0.02, "success": 0.8, "random_affirms": 0.02}
    weak = dict(strong, success=0.3)
    assert panel.pass_power("injected_thought", strong, 20, _table()) > 0.9
    assert panel.pass_power("injected_thought", weak, 20, _table()) < 0.5
    assert panel.pass_power("injected_thought", weak, 60, _table()) > panel.pass_power(
        "injected_thought", weak, 20, _table()
    )
    assert panel.pass_power("control", {"control": 0.5}, 30, _table()) < 0.05
    same = {"random_affirms": 0.2, "control": 0.2}
    assert panel.pass_power("random_vector", same, 30, _table()) > 0.9
    above = {"random_affirms": 0.9, "control": 0.1}
    assert panel.pass_power("random_vector", above, 30, _table()) < 0.01
    owner = {"apology_matching": 0.05, "apology_none": 0.9, "apology_random_word": 0.9}
    assert panel.pass_power("prefill", owner, 12, _table()) > 0.9
    with pytest.raises(ConfigError, match="needs measured rates"):
        panel.pass_power("prefill", {}, 12, _table())


def test_a_verdict_that_differs_from_the_table_is_a_mismatch():
    model = panel.PanelModel("m", "default", {"control": "PASS", "injected_thought": "FAIL"}, {})
    verdicts = [
        {"test": "control", "cell": {"label": "all"}, "passed": True},
        {"test": "injected_thought", "cell": {"label": "layer=0.67,strength=0.5"}, "passed": True},
    ]
    rows = panel.compare(model, verdicts)
    assert rows == [
        ("control", "all", "PASS", "PASS"),
        ("injected_thought", "layer=0.67,strength=0.5", "FAIL", "PASS"),
    ]
    text = panel.format_table({"m": rows})
    assert text.count("MISMATCH") == 1
    assert panel.compare(model, [])[0][3] == "MISSING"


def test_the_committed_truth_table_and_adapters_are_consistent():
    table = panel.load_truth_table()
    assert table.min_power >= 0.9
    for model in table.models:
        spec = ModelSpec.parse(model.spec)
        if not spec.adapter:
            continue
        directory = ROOT / spec.adapter
        weights = directory / train.ADAPTER_FILE
        assert weights.stat().st_size < 5_000_000
        record = json.loads((directory / train.CONFIG_FILE).read_text())
        assert record["adapter_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
        assert record["name"] == model.name


def test_panel_cli_names_a_bad_table(tmp_path, capsys):
    from introspection_bench.cli import main

    assert main(["reference-panel", "--table", str(tmp_path / "none.toml")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = "1"\n[models.m]\nspec = "default"\nexpected = { control = "MAYBE" }\n'
    )
    assert main(["reference-panel", "--table", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "none.toml not found" in err and "models.m.expected.control = 'MAYBE'" in err


def test_a_model_that_is_not_ready_is_listed_not_run(tmp_path):
    model = panel.PanelModel("m", "default", {"control": "PASS"}, {}, ready=False, note="retrain")
    table = panel.TruthTable("t", 0.9, 2, 0.05, 0.35, (model,))
    matched, report = panel.run_panel(table, tmp_path, (8,))
    assert matched and "m: NOT RUN (not ready: retrain)" in report
    assert not any(tmp_path.iterdir())


def test_expected_fails_are_sized_when_their_rates_are_known():
    table = _table()
    # A perturbation detector: random vectors affirmed far above the control; a close one is not.
    clear = {"random_affirms": 0.9, "control": 0.05}
    close = {"random_affirms": 0.3, "control": 0.15}
    assert panel.verdict_power("random_vector", "FAIL", clear, 8, table) > 0.9
    assert panel.verdict_power("random_vector", "FAIL", close, 8, table) < 0.5
    assert panel.verdict_power("injected_thought", "FAIL", {"control": 0.5}, 8, table) is None
    model = panel.PanelModel(
        "m", "default", {"random_vector": "FAIL", "control": "PASS"}, dict(close, control=0.02)
    )
    with pytest.raises(ConfigError, match="random_vector FAIL reaches power"):
        panel.trials_for(model, table, (8, 12))
    trials, powers = panel.trials_for(model, table, tuple(range(8, 201, 4)))
    assert trials > 8 and powers["random_vector FAIL"] >= 0.9 and powers["control PASS"] >= 0.9
