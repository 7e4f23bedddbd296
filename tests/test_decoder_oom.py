"""The decoder halves its batch on out-of-memory and reruns the rows in flight identically.

An out-of-memory error may strike at any allocation of the loop (prefill, shared prefix, merge,
retire, compaction, sampling, a decode forward); wherever it does, no trial is lost or
completed twice, and the tokens equal an undisturbed run.
"""

from collections import Counter

import pytest
import torch

from introspection_bench import generation
from introspection_bench.chat import render_chat
from introspection_bench.errors import InjectionError
from introspection_bench.generation import Decoder, GenerationRequest, seed_from_id

#: Where the loop allocates: (owner, attribute). Methods of Decoder and module helpers.
ALLOCATION_POINTS = [
    ("decoder", "_prefill"),
    ("decoder", "_prefix_cache"),
    ("decoder", "_forward"),
    ("decoder", "_sample"),
    ("decoder", "_advance"),
    ("module", "_merge"),
    ("module", "_select"),
    ("module", "_compact"),
]


def _requests(lm, count):
    prompt = tuple(lm.tokenizer("Tell me a story about")["input_ids"])
    return [
        GenerationRequest(f"r{i}", prompt, None, 6, 1.0, seed_from_id(f"r{i}"))
        for i in range(count)
    ]


def _refilled_requests(lm, count):
    """Chat prompts sharing a long prefix, stopping at different lengths (rows retire and merge)."""
    requests = []
    for i in range(count):
        turns = [("user", f"Write a short note number {i} about {'rain' * (1 + i % 3)}.")]
        ids = render_chat(lm.tokenizer, turns).input_ids
        requests.append(
            GenerationRequest(f"q{i}", ids, None, (2, 7, 4, 9)[i % 4], 1.0, seed_from_id(f"q{i}"))
        )
    return requests


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


@pytest.mark.parametrize(("owner", "name"), ALLOCATION_POINTS)
def test_oom_at_every_allocation_point_loses_nothing(tiny_models, monkeypatch, owner, name):
    lm = tiny_models["llama"]
    requests = _refilled_requests(lm, 10)
    expected = Decoder(lm, 4).generate(requests)
    decoder = Decoder(lm, 4)
    target = decoder if owner == "decoder" else generation
    original = getattr(target, name)
    calls = Counter()

    def count(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, count)
    Decoder.generate(decoder, requests)
    total = calls["n"]
    assert total >= 1, f"{name} never ran: the test would not exercise it"
    fail_at = (total + 1) // 2  # mid-run, with rows in flight
    calls.clear()

    def fail_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise torch.OutOfMemoryError("simulated")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, fail_once)
    decoder.batch_size = 4
    seen = []
    got = decoder.generate(requests, on_complete=seen.append)
    assert calls["n"] >= fail_at
    assert decoder.batch_size == 2
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]
    assert Counter(c.trial_id for c in seen) == Counter(r.trial_id for r in requests)


def test_oom_at_batch_one_is_a_clear_error(tiny_models, monkeypatch):
    lm = tiny_models["llama"]
    decoder = Decoder(lm, 4)

    def always_oom(*args, **kwargs):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(decoder, "_forward", always_oom)
    with pytest.raises(InjectionError, match="out of memory at batch size 1"):
        decoder.generate(_requests(lm, 2))
