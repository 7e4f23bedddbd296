"""The decoder halves its batch on out-of-memory and reruns the rows in flight identically."""

import pytest
import torch

from introspection_bench.errors import InjectionError
from introspection_bench.generation import Decoder, GenerationRequest, seed_from_id


def _requests(lm, count):
    prompt = tuple(lm.tokenizer("Tell me a story about")["input_ids"])
    return [GenerationRequest(f"r{i}", prompt, None, 6, 1.0, seed_from_id(f"r{i}")) for i in range(count)]


def test_oom_halves_batch_and_keeps_results(tiny_models, monkeypatch):
    lm = tiny_models["llama"]
    requests = _requests(lm, 8)
    expected = Decoder(lm, 8).generate(requests)
    decoder = Decoder(lm, 8)
    original = decoder._forward

    def forward_that_fails_on_big_batches(ids, *args, **kwargs):
        if ids.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return original(ids, *args, **kwargs)

    monkeypatch.setattr(decoder, "_forward", forward_that_fails_on_big_batches)
    got = decoder.generate(requests)
    assert decoder.batch_size == 2
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]


def test_oom_at_batch_one_is_a_clear_error(tiny_models, monkeypatch):
    lm = tiny_models["llama"]
    decoder = Decoder(lm, 4)

    def always_oom(*args, **kwargs):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(decoder, "_forward", always_oom)
    with pytest.raises(InjectionError, match="out of memory at batch size 1"):
        decoder.generate(_requests(lm, 2))
