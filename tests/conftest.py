"""Session fixtures for the library's own tests: tiny random-weight models and the default model.

Tiny models are built from configs (no download), one per supported architecture, fp32 on the
CPU, with SmolLM2's real tokenizer so prompts and chat templates are realistic. The real default
model (SmolLM2-135M-Instruct) is loaded once per session from its conversion cache.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from introspection_bench.models import (
    LoadedModel,
    convert_gguf,
    default_gguf_path,
    load_model,
    wrap_model,
)

#: The architectures the tiny-model fixtures cover (model_type names).
TINY_ARCHITECTURES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "gpt2",
    "gpt_neox",
    "phi3",
    "olmo2",
)

#: Decoder blocks per tiny architecture (2-4, varied so layer counts are really checked).
TINY_LAYERS = {
    "llama": 3,
    "mistral": 2,
    "qwen2": 3,
    "qwen3": 4,
    "gemma2": 3,
    "gemma3_text": 4,
    "gpt2": 3,
    "gpt_neox": 2,
    "phi3": 3,
    "olmo2": 4,
}

TINY_D_MODEL = 64
#: Small enough that test prompts overflow it, so the sliding-window cache really truncates.
TINY_SLIDING_WINDOW = 6


def tiny_config(
    model_type: str, vocab_size: int, special: dict[str, int | None], n_layers: int
) -> Any:
    """A tiny config of `model_type`: hidden 64, `n_layers` blocks, the given vocabulary."""
    from transformers import CONFIG_MAPPING

    kwargs: dict[str, Any] = {"vocab_size": vocab_size, **special}
    if model_type == "gpt2":
        kwargs.update(n_embd=TINY_D_MODEL, n_layer=n_layers, n_head=4, n_positions=512)
        return CONFIG_MAPPING[model_type](**kwargs)
    kwargs.update(
        hidden_size=TINY_D_MODEL,
        intermediate_size=128,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        max_position_embeddings=512,
    )
    if model_type != "gpt_neox":
        kwargs["num_key_value_heads"] = 2
    if model_type in ("qwen3", "gemma2", "gemma3_text"):
        kwargs["head_dim"] = 16
    if model_type in ("gemma2", "gemma3_text"):
        kwargs["sliding_window"] = TINY_SLIDING_WINDOW
    if model_type == "gemma3_text":
        kwargs["layer_types"] = ["sliding_attention", "full_attention"] * (n_layers // 2) + [
            "sliding_attention"
        ] * (n_layers % 2)
    return CONFIG_MAPPING[model_type](**kwargs)


def build_tiny(
    model_type: str, tokenizer: Any, *, seed: int = 0, n_layers: int | None = None
) -> LoadedModel:
    """A seeded, fp32, random-weight model of `model_type`, wrapped with `wrap_model`."""
    from transformers import AutoModelForCausalLM

    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = tiny_config(model_type, len(tokenizer), special, n_layers or TINY_LAYERS[model_type])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return wrap_model(model, tokenizer, spec=f"tiny:{model_type}")


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per process: the tests share two cores (and xdist runs two workers).

    With more threads than free cores, OpenMP workers wait on each other and a tiny model's
    forward runs 5-10x slower.
    """
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The default model's safetensors conversion cache (converted once if missing)."""
    return convert_gguf(default_gguf_path())


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir: Path) -> Any:
    """SmolLM2's real tokenizer, shared (read-only) by the tiny models."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir))


@pytest.fixture
def fresh_tokenizer(smollm2_dir: Path) -> Any:
    """A private copy of SmolLM2's tokenizer that a test may modify."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir))


@pytest.fixture(scope="session")
def tiny_models(smollm2_tokenizer: Any) -> dict[str, LoadedModel]:
    """model_type -> tiny random-weight `LoadedModel`, one per TINY_ARCHITECTURES entry."""
    return {name: build_tiny(name, smollm2_tokenizer) for name in TINY_ARCHITECTURES}


@pytest.fixture(params=TINY_ARCHITECTURES)
def tiny(request: pytest.FixtureRequest, tiny_models: dict[str, LoadedModel]) -> LoadedModel:
    """Each tiny architecture in turn (parametrizes the test over all of them)."""
    return tiny_models[request.param]


@pytest.fixture(scope="session")
def tiny_layer_counts() -> dict[str, int]:
    """model_type -> the number of decoder blocks its tiny config was built with."""
    return dict(TINY_LAYERS)


@pytest.fixture(scope="session")
def tiny_builder(smollm2_tokenizer: Any) -> Any:
    """`build(model_type, seed=..., n_layers=...)`: a fresh tiny model a test may modify."""

    def build(model_type: str, *, seed: int = 0, n_layers: int | None = None) -> LoadedModel:
        return build_tiny(model_type, smollm2_tokenizer, seed=seed, n_layers=n_layers)

    return build


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The real default model (SmolLM2-135M-Instruct), fp32 on the CPU, loaded once."""
    return load_model("default", device="cpu", dtype="fp32")


@pytest.fixture(autouse=True)
def _seed_everything() -> Iterator[None]:
    """Seed every RNG per test so failures reproduce."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
