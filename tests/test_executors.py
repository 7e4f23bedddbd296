"""`--executor`: parsing, and the Ray executor on a local two-CPU Ray cluster with SmolLM2.

One actor is killed (SIGKILL) as soon as the first group's records are back; the run must
still finish every trial exactly once, resend only the dead actor's group, and give the same
tokens as decoding the same groups in this process.
"""

from __future__ import annotations

import importlib.util
import os
import signal

import pytest
import torch

from introspection_bench.errors import ConfigError
from introspection_bench.executors import ExecutorSpec, ModelRecipe
from introspection_bench.generation import Decoder, GenerationRequest
from introspection_bench.hooks import InjectionSpec
from introspection_bench.models import LoadedModel

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason="ray is not installed: pip install 'introspection-bench[ray]'"
)


def test_parse_local() -> None:
    assert ExecutorSpec.parse(None) == ExecutorSpec("local")
    assert ExecutorSpec.parse("local") == ExecutorSpec("local")


def test_parse_rejects_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown --executor 'dask'"):
        ExecutorSpec.parse("dask")


@needs_ray
def test_parse_ray() -> None:
    assert ExecutorSpec.parse("ray") == ExecutorSpec("ray", None)
    assert ExecutorSpec.parse("ray:ray://head:10001") == ExecutorSpec("ray", "ray://head:10001")


def _requests(lm: LoadedModel) -> list[GenerationRequest]:
    ids = tuple(lm.tokenizer("Tell me a short story about a lighthouse.")["input_ids"])
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(3))
    out = []
    for i in range(12):
        spec = InjectionSpec(20, vector, 2.0, len(ids) - 3, None) if i % 2 else None
        out.append(GenerationRequest(f"t/{i}", ids, spec, 12, 1.0, 1000 + i))
    return out


@needs_ray
@pytest.mark.slow
def test_ray_run_survives_a_killed_actor(smollm2: LoadedModel) -> None:
    import ray

    from introspection_bench.executors import RayDecoder

    requests = _requests(smollm2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        decoder = RayDecoder(
            ModelRecipe("default", "cpu", "fp32", None),
            n_actors=2,
            group_size=2,
            fingerprint=smollm2.fingerprint,
        )
        pids = ray.get([actor.pid.remote() for actor in decoder.actors])
        seen: list[str] = []

        def on_complete(completion) -> None:
            if not seen:
                os.kill(pids[0], signal.SIGKILL)  # lose a worker mid-run
            seen.append(completion.trial_id)

        completions = decoder.generate(requests, on_complete)
        restarts, resent = decoder.restarts, decoder.resent
        decoder.shutdown()
    finally:
        ray.shutdown()
    assert sorted(seen) == sorted(r.trial_id for r in requests)  # every trial exactly once
    assert restarts == 1 and resent == 1
    local = Decoder(smollm2)
    expected = [c for start in range(0, 12, 2) for c in local.generate(requests[start : start + 2])]
    assert [c.token_ids for c in completions] == [c.token_ids for c in expected]
