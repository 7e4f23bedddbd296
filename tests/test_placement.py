"""Placement: one GPU per xdist worker (mapping logic, no GPU needed) and `--device-map`.

The device-map test dispatches the real default model with accelerate, two decoder blocks
(the injection block among them) offloaded to disk, so their weights sit on the `meta` device
and are loaded for every forward by accelerate's hooks. Injection and recording must behave
exactly as on the undispatched model, and decoding must give the same tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from introspection_bench import packed_linear
from introspection_bench.errors import ConfigError
from introspection_bench.generation import GenerationRequest, generate
from introspection_bench.hooks import InjectionSpec, RowInjections, hook_count, inject, record
from introspection_bench.models import LoadedModel, load_model
from introspection_bench.placement import parse_device_map, worker_device, worker_index


@pytest.mark.parametrize(
    ("device", "worker", "workers", "gpus", "expected"),
    [
        ("cuda", "gw0", 4, 4, "cuda:0"),
        ("cuda", "gw3", 4, 4, "cuda:3"),
        ("cuda", "gw1", 2, 8, "cuda:1"),
        ("auto", "gw1", 2, 2, "cuda:1"),
        ("auto", "gw1", 2, 0, "auto"),  # no GPU: auto stays auto (the CPU)
        ("cpu", "gw5", 8, 2, "cpu"),
        ("cuda:1", "gw0", 4, 2, "cuda:1"),  # an explicit device is kept
        ("cuda", None, None, 2, "cuda"),  # no xdist
        ("cuda", "master", None, 2, "cuda"),
    ],
)
def test_worker_device(
    device: str, worker: str | None, workers: int | None, gpus: int, expected: str
) -> None:
    assert worker_device(device, worker, workers, gpus) == expected


def test_more_workers_than_gpus_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"4 pytest-xdist workers but 2 visible CUDA .* -n 2"):
        worker_device("cuda", "gw0", 4, 2)
    with pytest.raises(ConfigError, match="0 visible CUDA"):
        worker_device("cuda", "gw0", 1, 0)


def test_worker_index() -> None:
    assert worker_index("gw12") == 12
    assert worker_index(None) is None
    with pytest.raises(ConfigError, match="worker id 'node7'"):
        worker_index("node7")


def test_parse_device_map(tmp_path: Path) -> None:
    assert parse_device_map(None) is None
    assert parse_device_map("auto") == "auto"
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"model.layers.0": 0, "lm_head": "cpu"}))
    assert parse_device_map(str(mapping)) == {"model.layers.0": 0, "lm_head": "cpu"}
    with pytest.raises(ConfigError, match="--device-map 'fastest'"):
        parse_device_map("fastest")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        parse_device_map(str(tmp_path / "bad.json"))


# -- the real model, partly offloaded to disk ---------------------------------------------------
OFFLOADED = (19, 20)
LAYER = 20


@pytest.fixture(scope="module")
def dispatched() -> LoadedModel:
    device_map = {"model.embed_tokens": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu"}
    device_map |= {f"model.layers.{i}": "disk" if i in OFFLOADED else "cpu" for i in range(30)}
    device_map["lm_head"] = "cpu"
    return load_model("default", device="cpu", dtype="fp32", device_map=device_map)


def _prompt(lm: LoadedModel) -> torch.Tensor:
    text = "Tell me about the ocean and what lives in it."
    return torch.tensor([lm.tokenizer(text)["input_ids"]])


@pytest.mark.slow
def test_offloaded_blocks_are_dispatched(dispatched: LoadedModel, smollm2: LoadedModel) -> None:
    block = dispatched.layers[LAYER]
    assert hasattr(block, "_hf_hook")
    assert next(block.parameters()).device.type == "meta"
    assert dispatched.device == torch.device("cpu")
    assert dispatched.fingerprint == smollm2.fingerprint  # read from the offload store


@pytest.mark.slow
def test_hooks_on_offloaded_block_match_undispatched(
    dispatched: LoadedModel, smollm2: LoadedModel
) -> None:
    ids = _prompt(smollm2)
    positions = torch.arange(ids.shape[1])[None]
    vector = torch.randn(smollm2.d_model, generator=torch.Generator().manual_seed(0))
    spec = InjectionSpec(layer=LAYER, vector=vector, strength=4.0, start=3, end=6)
    out = {}
    # The dispatched model multiplies with torch's dense linear (its weights move per call, so
    # they are not packed): the plain one does too here, so the two must agree bit for bit.
    for name, lm in (("plain", smollm2), ("dispatched", dispatched)):
        with (
            torch.no_grad(),
            packed_linear.dense_linears(lm.model),
            record(lm, [LAYER - 1, LAYER]) as clean,
        ):
            lm.model(ids, position_ids=positions)
            clean = {k: v.clone() for k, v in clean.items()}
        rows = RowInjections([spec], lm.d_model, lm.device, lm.dtype)
        with (
            torch.no_grad(),
            packed_linear.dense_linears(lm.model),
            inject(lm, rows),
            record(lm, [LAYER]) as hooked,
        ):
            rows.positions = positions
            lm.model(ids, position_ids=positions)
            hooked = {k: v.clone() for k, v in hooked.items()}
        assert hook_count(lm) == 0
        out[name] = (clean, hooked)
        window = torch.zeros(ids.shape[1], dtype=torch.bool)
        window[3:6] = True
        # Outside the window the hooked stream equals the clean one exactly; inside, the
        # difference is exactly strength x vector (fp32).
        assert torch.equal(hooked[LAYER][0, ~window], clean[LAYER][0, ~window])
        delta = hooked[LAYER][0, window] - clean[LAYER][0, window]
        expected = (4.0 * vector).expand_as(delta)
        assert torch.allclose(delta, expected, atol=1e-4, rtol=0)
    for layer in (LAYER - 1, LAYER):
        assert torch.equal(out["plain"][0][layer], out["dispatched"][0][layer])
    assert torch.equal(out["plain"][1][LAYER], out["dispatched"][1][LAYER])


@pytest.mark.slow
def test_decoding_on_dispatched_model_equals_undispatched(
    dispatched: LoadedModel, smollm2: LoadedModel
) -> None:
    ids = tuple(_prompt(smollm2)[0].tolist())
    vector = torch.randn(smollm2.d_model, generator=torch.Generator().manual_seed(1))
    requests = [
        GenerationRequest("plain", ids, None, 8, 0.0, 0),
        GenerationRequest(
            "injected", ids, InjectionSpec(LAYER, vector, 8.0, len(ids) - 2, None), 8, 1.0, 7
        ),
    ]
    plain = generate(smollm2, requests)
    offloaded = generate(dispatched, requests)
    assert [c.token_ids for c in offloaded] == [c.token_ids for c in plain]
    assert hook_count(dispatched) == 0
