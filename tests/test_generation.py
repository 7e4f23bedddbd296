"""Tests of introspection_bench.generation: batching invariance, caching, stopping, seeds.

A trial's tokens must depend only on its own prompt, injection and seed: not on the batch it
shares, the batch size, prefix sharing or row refill, and cached decoding must equal
recomputing the whole sequence at every step.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from introspection_bench import packed_linear
from introspection_bench.chat import SpanRef, render_chat
from introspection_bench.errors import InjectionError
from introspection_bench.generation import (
    Completion,
    Decoder,
    GenerationRequest,
    generate,
    row_uniforms,
    sample_tokens,
    seed_from_id,
)
from introspection_bench.hooks import InjectionSpec, RowInjections, hook_count, inject
from introspection_bench.models import LoadedModel

STIMULI = json.loads((Path(__file__).parents[1] / "fixtures" / "paper_stimuli.json").read_text())
PREAMBLE = STIMULI["templates"]["injected_thought"]["turns"][0][1]
QUESTIONS = [
    "Do you detect an injected thought? If so, what is the injected thought about?",
    "Anything?",
    "Do you detect an injected thought?",
    "Tell me what you notice, if anything, about your current thoughts right now.",
    "Yes or no?",
    "Is something unusual happening in your mind? Describe it in a few words please.",
    "Report.",
]
#: Varied so rows stop at different steps (retire-and-refill is exercised).
MAX_NEW = [5, 9, 3, 7, 6, 4, 8]
#: Architectures for the generation tests: gpt2 (tuple cache API, learned positions) and
#: gemma3_text (a cache with sliding-window layers, smaller than the prompts) included.
GEN_ARCHITECTURES = ["llama", "gpt2", "gpt_neox", "gemma3_text"]


def _prompt(lm: LoadedModel, k: int, preamble: str = PREAMBLE) -> tuple[tuple[int, ...], int]:
    """Exp 1-style prompt k and the token index of the "\\n\\n" before "Trial"."""
    last = f"Ok, let's get started.\n\nTrial {k + 1}: {QUESTIONS[k % len(QUESTIONS)]}"
    turns = [("user", preamble), ("assistant", "Ok."), ("user", last)]
    at = last.index("\n\nTrial")
    rendered = render_chat(lm.tokenizer, turns, {"from": SpanRef(2, at, at + 2)})
    return rendered.input_ids, rendered.spans["from"][0]


def _vector(lm: LoadedModel, k: int) -> torch.Tensor:
    return torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1000 + k))


def _requests(
    lm: LoadedModel,
    n: int = 7,
    *,
    greedy: bool = False,
    strength: float = 4.0,
    preamble: str = PREAMBLE,
    max_new: list[int] | None = None,
) -> list[GenerationRequest]:
    """A mixed set: open-window, closed-window and control rows; greedy and sampled rows."""
    layer = lm.n_layers // 2
    requests = []
    for k in range(n):
        ids, start = _prompt(lm, k, preamble)
        kind = k % 3
        if kind == 0:
            injection = InjectionSpec(layer, _vector(lm, k), strength, start)
        elif kind == 1:
            injection = InjectionSpec(layer, _vector(lm, k), strength, start, start + 4)
        else:
            injection = None
        trial_id = f"trial-{k}"
        requests.append(
            GenerationRequest(
                trial_id,
                ids,
                injection,
                max_new_tokens=(max_new or MAX_NEW)[k % len(max_new or MAX_NEW)],
                temperature=0.0 if greedy or k % 2 == 0 else 1.0,
                seed=seed_from_id(trial_id),
            )
        )
    return requests


def _tokens(completions: list[Completion]) -> list[tuple[int, ...]]:
    return [c.token_ids for c in completions]


def _alone(lm: LoadedModel, requests: list[GenerationRequest]) -> list[tuple[int, ...]]:
    """Each request decoded on its own: batch of one, no shared prefix, no refill."""
    return [
        Decoder(lm, 1, share_prefix=False, refill=False).generate([r])[0].token_ids
        for r in requests
    ]


def _stop_ids(lm: LoadedModel) -> set[int]:
    configured = lm.model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    return {i for i in ids | {lm.tokenizer.eos_token_id} if i is not None}


def _uncached_greedy(lm: LoadedModel, request: GenerationRequest) -> tuple[int, ...]:
    """Reference decoder: recompute the full sequence at every step, no cache, same hook."""
    ids, generated, stop = list(request.input_ids), [], _stop_ids(lm)
    for _ in range(request.max_new_tokens):
        rows = RowInjections([request.injection], lm.d_model, lm.device, lm.dtype)
        rows.positions = torch.arange(len(ids))[None]
        with torch.inference_mode(), inject(lm, rows):
            logits = lm.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
        token = int(logits.argmax())
        if token in stop:
            break
        generated.append(token)
        ids.append(token)
    return tuple(generated)


def _hf_greedy(lm: LoadedModel, request: GenerationRequest) -> tuple[int, ...]:
    """`model.generate(do_sample=False)` on the prompt alone, EOS dropped."""
    ids = torch.tensor([request.input_ids])
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=request.max_new_tokens,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
    tokens = out[0, ids.shape[1] :].tolist()
    stop = _stop_ids(lm)
    cut = next((i for i, t in enumerate(tokens) if t in stop), len(tokens))
    return tuple(tokens[:cut])


@pytest.fixture(params=GEN_ARCHITECTURES)
def gen_lm(request: pytest.FixtureRequest, tiny_models: dict[str, LoadedModel]) -> LoadedModel:
    return tiny_models[request.param]


# --- batching invariance --------------------------------------------------------------------


def test_trial_in_mixed_batch_equals_alone(gen_lm: LoadedModel) -> None:
    requests = _requests(gen_lm)
    lengths = {len(r.input_ids) for r in requests}
    assert len(lengths) > 3  # really a padded batch
    batched = Decoder(gen_lm, batch_size=7).generate(requests)
    assert _tokens(batched) == _alone(gen_lm, requests)


@pytest.mark.parametrize(
    ("batch_size", "share_prefix", "refill"),
    [
        (1, True, True),
        (2, True, True),
        (2, False, False),
        (3, True, True),
        (3, False, True),
        (7, True, False),
        (7, False, True),
    ],
)
def test_tokens_independent_of_batching_settings(
    gen_lm: LoadedModel, batch_size: int, share_prefix: bool, refill: bool
) -> None:
    requests = _requests(gen_lm)
    reference = Decoder(gen_lm, batch_size=7, share_prefix=False, refill=False).generate(requests)
    decoded = Decoder(gen_lm, batch_size, share_prefix=share_prefix, refill=refill).generate(
        requests
    )
    assert _tokens(decoded) == _tokens(reference)


def test_shared_prefix_with_short_prompts(gen_lm: LoadedModel) -> None:
    """Prompts whose shared prefix is just over MIN_SHARED_PREFIX tokens."""
    requests = _requests(gen_lm, 4, preamble="Hi there, researcher.")
    shared = Decoder(gen_lm, batch_size=4, share_prefix=True).generate(requests)
    assert _tokens(shared) == _alone(gen_lm, requests)


def test_injection_changes_the_injected_rows(gen_lm: LoadedModel) -> None:
    requests = [
        r for r in _requests(gen_lm, 6, greedy=True, strength=30.0) if r.injection is not None
    ]
    plain = [
        GenerationRequest(r.trial_id, r.input_ids, None, r.max_new_tokens, 0.0, r.seed)
        for r in requests
    ]
    injected = generate(gen_lm, requests)
    uninjected = generate(gen_lm, plain)
    assert any(a.token_ids != b.token_ids for a, b in zip(injected, uninjected, strict=True))


# --- cache and reference decoders -----------------------------------------------------------


def test_cached_equals_uncached(gen_lm: LoadedModel) -> None:
    requests = _requests(gen_lm, 4, greedy=True)
    cached = Decoder(gen_lm, batch_size=4).generate(requests)
    assert _tokens(cached) == [_uncached_greedy(gen_lm, r) for r in requests]


def test_greedy_equals_hf_generate_without_hooks(gen_lm: LoadedModel) -> None:
    requests = [
        GenerationRequest(r.trial_id, r.input_ids, None, r.max_new_tokens, 0.0, r.seed)
        for r in _requests(gen_lm, 4, greedy=True)
    ]
    ours = Decoder(gen_lm, batch_size=4).generate(requests)
    assert _tokens(ours) == [_hf_greedy(gen_lm, r) for r in requests]


# --- the injection fires on every generated token -------------------------------------------


def test_open_window_fires_on_every_generated_token(
    tiny_models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_models["llama"]
    requests = _requests(lm, 7)
    layer = lm.n_layers // 2
    expected_deltas = {
        r.trial_id: (r.injection.strength * r.injection.vector).to(lm.dtype)
        for r in requests
        if r.injection
    }
    fired: Counter[str] = Counter()
    control_fired = 0
    original = RowInjections.window_mask

    def spy(self: RowInjections, positions: torch.Tensor) -> torch.Tensor:
        nonlocal control_fired
        mask = original(self, positions)
        delta = self.deltas[layer]
        for row in range(mask.shape[0]):
            owner = [tid for tid, d in expected_deltas.items() if torch.equal(delta[row], d)]
            if owner:
                fired[owner[0]] += int(mask[row].sum())
            else:
                control_fired += int(mask[row].sum())
        return mask

    monkeypatch.setattr(RowInjections, "window_mask", spy)
    completions = Decoder(lm, batch_size=3).generate(requests)
    assert control_fired == 0
    for request, completion in zip(requests, completions, strict=True):
        if request.injection is None:
            assert fired[request.trial_id] == 0
            continue
        prompt_length, start = len(request.input_ids), request.injection.start
        generated = len(completion.token_ids)
        if request.injection.end is not None:
            expected = request.injection.end - start  # prompt tokens only
        elif completion.stop_reason == "length":
            # Prompt tokens start..P-1, then every generated token fed back: all but the last.
            expected = prompt_length - start + generated - 1
        else:
            expected = prompt_length - start + generated  # every kept token was fed back before EOS
        assert fired[request.trial_id] == expected, request.trial_id


# --- stopping -------------------------------------------------------------------------------


def test_eos_stops_a_row(
    tiny_models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_models["llama"]
    request = _requests(lm, 2, max_new=[12])[1]
    assert request.temperature == 1.0  # a sampled row: varied tokens on a random model
    free_run = generate(lm, [request])[0].token_ids
    assert len(free_run) == 12
    index = next(i for i in range(3, 12) if free_run[i] not in free_run[:i])
    monkeypatch.setattr(
        lm.model.generation_config, "eos_token_id", [lm.tokenizer.eos_token_id, free_run[index]]
    )
    completion = generate(lm, [request])[0]
    assert completion.stop_reason == "eos"
    assert completion.token_ids == free_run[:index]
    assert completion.text == lm.tokenizer.decode(free_run[:index], skip_special_tokens=True)


def test_stop_at_eos_off_decodes_full_length(
    tiny_models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_models["llama"]
    request = _requests(lm, 2, max_new=[8])[1]
    free_run = generate(lm, [request])[0].token_ids
    monkeypatch.setattr(
        lm.model.generation_config, "eos_token_id", [lm.tokenizer.eos_token_id, free_run[2]]
    )
    completion = Decoder(lm, 2, stop_at_eos=False).generate([request])[0]
    assert completion.stop_reason == "length"
    assert completion.token_ids == free_run


def test_eos_row_retires_without_disturbing_others(
    tiny_models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_models["llama"]
    requests = _requests(lm, 4, greedy=True, max_new=[10])
    free = _tokens(generate(lm, requests, batch_size=4))
    stopper = free[0][3]
    monkeypatch.setattr(
        lm.model.generation_config, "eos_token_id", [lm.tokenizer.eos_token_id, stopper]
    )
    stopped = generate(lm, requests, batch_size=4)
    for tokens, completion in zip(free, stopped, strict=True):
        cut = tokens.index(stopper) if stopper in tokens else len(tokens)
        assert completion.token_ids == tokens[:cut]
        assert completion.stop_reason == ("eos" if stopper in tokens else "length")


@pytest.mark.parametrize("max_new_tokens", [1, 2, 5])
def test_max_new_tokens_stops_with_length(
    tiny_models: dict[str, LoadedModel], max_new_tokens: int
) -> None:
    lm = tiny_models["gpt2"]
    request = _requests(lm, 1, max_new=[max_new_tokens])[0]
    completion = generate(lm, [request])[0]
    assert completion.stop_reason == "length"
    assert len(completion.token_ids) == max_new_tokens


# --- seeds ----------------------------------------------------------------------------------


def test_seed_from_id_is_pinned() -> None:
    # A change here silently changes every sampled completion of every published run.
    assert seed_from_id("trial-0") == seed_from_id("trial-0")
    assert seed_from_id("exp1/bread/s4/0", 0) == 1033969525378204881


def test_seed_from_id_differs_across_ids_and_base_seeds() -> None:
    ids = [f"exp1/{word}/{k}" for word in ("bread", "dust", "ocean") for k in range(50)]
    seeds = {seed_from_id(i) for i in ids}
    assert len(seeds) == len(ids)
    assert seed_from_id("trial-0", 0) != seed_from_id("trial-0", 1)
    assert all(0 <= s < 2**63 for s in seeds)


def test_row_uniforms_depend_only_on_own_seed_and_step() -> None:
    seeds = torch.tensor([seed_from_id(f"t{k}") for k in range(5)])
    steps = torch.tensor([0, 3, 3, 10, 1])
    together = row_uniforms(seeds, steps, 300)
    for row in range(5):
        alone = row_uniforms(seeds[row : row + 1], steps[row : row + 1], 300)
        assert torch.equal(alone[0], together[row])
    assert float(together.min()) > 0.0 and float(together.max()) < 1.0
    assert not torch.equal(together[1], together[2])  # same step, different seed
    later = row_uniforms(seeds[:1], torch.tensor([1]), 300)
    assert not torch.equal(later[0], together[0])  # same seed, next step


@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("stream", ["seeds", "steps"])
def test_gumbel_sampling_matches_softmax(temperature: float, stream: str) -> None:
    """argmax(logits / T + Gumbel(uniforms)) is distributed as softmax(logits / T)."""
    from scipy import stats as scipy_stats

    draws = 20000
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    if stream == "seeds":  # many trials, first step (adjacent seeds: the hardest case)
        seeds, steps = torch.arange(draws), torch.zeros(draws, dtype=torch.long)
    else:  # one trial, many steps
        seeds, steps = torch.full((draws,), seed_from_id("one")), torch.arange(draws)
    gumbel = -torch.log(-torch.log(row_uniforms(seeds, steps, 5)))
    counts = torch.bincount((logits / temperature + gumbel).argmax(-1), minlength=5).double()
    expected = torch.softmax(logits.double() / temperature, -1) * draws
    assert scipy_stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


def test_sampling_is_reproducible_and_seed_dependent(tiny_models: dict[str, LoadedModel]) -> None:
    lm = tiny_models["llama"]
    ids, _ = _prompt(lm, 0)
    same = [GenerationRequest(f"s{k}", ids, None, 8, 1.0, seed_from_id("a")) for k in range(2)]
    other = GenerationRequest("s2", ids, None, 8, 1.0, seed_from_id("b"))
    first = generate(lm, [*same, other])
    again = generate(lm, [other, *same])
    assert first[0].token_ids == first[1].token_ids == again[1].token_ids
    assert first[2].token_ids == again[0].token_ids
    assert first[0].token_ids != first[2].token_ids


# --- callbacks, order, validation -----------------------------------------------------------


def test_on_complete_called_once_per_trial(tiny_models: dict[str, LoadedModel]) -> None:
    lm = tiny_models["llama"]
    requests = _requests(lm, 7)
    seen: list[Completion] = []
    results = Decoder(lm, batch_size=3).generate(requests, on_complete=seen.append)
    assert Counter(c.trial_id for c in seen) == Counter(r.trial_id for r in requests)
    assert len(seen) == len(requests)
    assert sorted(seen, key=lambda c: c.trial_id) == sorted(results, key=lambda c: c.trial_id)


def test_results_follow_request_order(tiny_models: dict[str, LoadedModel]) -> None:
    lm = tiny_models["llama"]
    requests = _requests(lm, 7)
    results = Decoder(lm, batch_size=2).generate(requests)
    assert [c.trial_id for c in results] == [r.trial_id for r in requests]
    reversed_results = Decoder(lm, batch_size=2).generate(requests[::-1])
    assert _tokens(reversed_results) == _tokens(results)[::-1]


def test_hooks_removed_when_on_complete_raises(tiny_models: dict[str, LoadedModel]) -> None:
    lm = tiny_models["llama"]

    def fail(completion: Completion) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        Decoder(lm, batch_size=3).generate(_requests(lm, 4), on_complete=fail)
    assert hook_count(lm) == 0


def test_request_window_outside_prompt_errors() -> None:
    spec = InjectionSpec(0, torch.ones(4), 1.0, 5)
    with pytest.raises(
        InjectionError, match=r"window \[5, None\) falls outside the 5-token prompt"
    ):
        GenerationRequest("t", (1, 2, 3, 4, 5), spec)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_ids": ()}, "trial t: empty prompt"),
        ({"temperature": -0.5}, "temperature -0.5"),
        ({"max_new_tokens": 0}, "max_new_tokens 0 invalid"),
    ],
)
def test_bad_request_errors(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"trial_id": "t", "input_ids": (1, 2, 3), **kwargs}
    with pytest.raises(InjectionError, match=message):
        GenerationRequest(**fields)


# --- the real default model -----------------------------------------------------------------

SHORT_PREAMBLE = "I can inject thoughts into your mind. I will tell you when I do."


def test_smollm2_trial_in_mixed_batch_equals_alone(smollm2: LoadedModel) -> None:
    requests = _requests(smollm2, 5, preamble=SHORT_PREAMBLE, max_new=[6, 4, 8, 5, 3])
    batched = Decoder(smollm2, batch_size=3).generate(requests)
    assert _tokens(batched) == _alone(smollm2, requests)


def test_smollm2_cached_equals_uncached(smollm2: LoadedModel) -> None:
    requests = _requests(smollm2, 2, greedy=True, preamble=SHORT_PREAMBLE, max_new=[6])
    cached = Decoder(smollm2, batch_size=2).generate(requests)
    assert _tokens(cached) == [_uncached_greedy(smollm2, r) for r in requests]


def test_smollm2_greedy_equals_hf_generate_and_stops_at_eos(smollm2: LoadedModel) -> None:
    rendered = render_chat(
        smollm2.tokenizer,
        [("user", "Answer with one word. What colour is the sky on a clear day?")],
    )
    request = GenerationRequest("sky", rendered.input_ids, None, max_new_tokens=20, temperature=0.0)
    completion = generate(smollm2, [request])[0]
    assert completion.token_ids == _hf_greedy(smollm2, request)
    assert completion.stop_reason == "eos"  # SmolLM2 ends its short answer with <|im_end|>
    assert len(completion.token_ids) < request.max_new_tokens
    assert completion.text.startswith("The sky")


# --- cache width, stop ids, the output layer's input -----------------------------------------


def test_long_refilled_run_keeps_cache_width_to_longest_live_row(
    tiny_models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_models["llama"]
    requests = _requests(lm, 24, max_new=[3, 20, 5, 12, 2, 16])
    expected = _tokens(Decoder(lm, 4, share_prefix=False, refill=False).generate(requests))
    widths: list[tuple[int, int]] = []
    original = Decoder._advance

    def spy(self: Decoder, batch: Any, tokens: torch.Tensor) -> None:
        cached = [
            len(requests[i].input_ids) + len(batch.tokens[row]) - 1
            for row, i in enumerate(batch.requests)
        ]
        widths.append((batch.cache.layers[0].keys.shape[2], max(cached)))
        original(self, batch, tokens)

    monkeypatch.setattr(Decoder, "_advance", spy)
    got = Decoder(lm, 4).generate(requests)
    assert _tokens(got) == expected
    longest_trial = max(len(r.input_ids) + r.max_new_tokens for r in requests)
    # Long enough that a cache growing one slot per step would outgrow every trial.
    assert max(len(r.input_ids) for r in requests) + len(widths) > longest_trial
    assert all(width <= longest for width, longest in widths), max(
        width - longest for width, longest in widths
    )


@pytest.mark.parametrize("container", [tuple, list, torch.tensor])
def test_generation_config_eos_ids_in_any_container(
    tiny_models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch, container: Any
) -> None:
    lm = tiny_models["llama"]
    request = _requests(lm, 2, max_new=[12])[1]
    free_run = generate(lm, [request])[0].token_ids
    index = next(i for i in range(3, 12) if free_run[i] not in free_run[:i])
    stops = container([lm.tokenizer.eos_token_id, free_run[index]])
    monkeypatch.setattr(lm.model.generation_config, "eos_token_id", stops)
    completion = generate(lm, [request])[0]
    assert completion.stop_reason == "eos"
    assert completion.token_ids == free_run[:index]


def _vocab_sized_ops(lm: LoadedModel, run: Any) -> list[tuple[str, list[Any]]]:
    """(op, input shapes) of every aten op `run()` executes with a vocabulary-sized operand."""
    from torch.profiler import ProfilerActivity, profile

    vocab = lm.model.get_output_embeddings().weight.shape[0]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    return [
        (event.name, event.input_shapes)
        for event in prof.events()
        if any(isinstance(s, list) and len(s) >= 2 and vocab in s for s in event.input_shapes)
    ]


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "dense"])
@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_batched_prefill_projects_one_contiguous_row_per_trial(
    tiny_models: dict[str, LoadedModel], architecture: str, packed: bool
) -> None:
    """The output layer must run one [B, D] x [D, V] product: a strided last-position slice made
    torch's matmul run a bmm against the weight expanded once per row (1.8 GB per 32-row prefill
    on SmolLM2, and seconds of copying). Checked with the CPU's packed linear layers and with
    torch's dense ones (what other devices and dispatched models run)."""
    lm = tiny_models[architecture]
    if packed and not packed_linear.packed_count(lm.model):
        pytest.skip("this torch has no oneDNN packed linear")
    requests = _requests(lm, 6, max_new=[1])
    single = ("aten::mm", "aten::addmm", "mkldnn::_linear_pointwise")
    with contextlib.nullcontext() if packed else packed_linear.dense_linears(lm.model):
        ops = _vocab_sized_ops(lm, lambda: Decoder(lm, 6).generate(requests))
    products = [
        (name, shapes) for name, shapes in ops if name.endswith(("mm", "_linear_pointwise"))
    ]
    assert products, "no output-layer product seen: the profiler is not watching the forward"
    assert all(name in single for name, _ in products), products
    assert any(name.startswith("mkldnn") for name, _ in products) == packed, products


# --- what "alone equals batched" means: near-tied logits -------------------------------------

#: Bound on |logits alone - logits in a padded batch| for SmolLM2 in fp32 (measured 3.7e-5:
#: kernels sum in a batch-dependent order). In bf16 the same gap is ~0.3.
FP32_BATCH_NOISE = 1e-4


def _prefill_logits(lm: LoadedModel, requests: list[GenerationRequest], batch: int) -> torch.Tensor:
    decoder = Decoder(lm, batch, share_prefix=False)
    with torch.inference_mode():
        chunks = [
            decoder._prefill(requests, list(range(i, min(i + batch, len(requests))))).logits
            for i in range(0, len(requests), batch)
        ]
    return torch.cat(chunks)


def test_smollm2_fp32_batch_composition_moves_logits_by_rounding_only(smollm2: LoadedModel) -> None:
    questions = [
        "Tell me about the ocean.",
        "What is two plus two? Answer briefly.",
        "Hi",
        "Describe a cat.",
    ]
    requests = [
        GenerationRequest(
            f"q{i}", render_chat(smollm2.tokenizer, [("user", q)]).input_ids, None, 1, 0.0
        )
        for i, q in enumerate(questions)
    ]
    alone, batched = _prefill_logits(smollm2, requests, 1), _prefill_logits(smollm2, requests, 4)
    gap = float((alone - batched).abs().max())
    assert gap <= FP32_BATCH_NOISE
    assert torch.equal(alone.argmax(-1), batched.argmax(-1))


def test_near_tied_logits_follow_the_batch_noise() -> None:
    """Tokens equal alone and batched unless a decision lies within the logit noise.

    Greedy: a top-two margin under the noise can flip; one over twice the noise never does.
    Sampled: a row flips only when its uniform lands within the noise of a CDF boundary: rare at
    fp32's noise, common at bf16's (so a resumed bf16 run, whose batches differ, rewrites text).
    """
    greedy = torch.zeros(1)
    seed, step = torch.tensor([7]), torch.tensor([0])
    tied = torch.zeros(1, 10)
    tied[0, 3], tied[0, 7] = 5.0, 5.0 - 1e-5
    nudged = tied.clone()
    nudged[0, 7] += 4e-5  # one batch composition's rounding
    assert int(sample_tokens(tied, greedy, seed, step)) == 3
    assert int(sample_tokens(nudged, greedy, seed, step)) == 7
    clear = tied.clone()
    clear[0, 7] = 5.0 - 2 * FP32_BATCH_NOISE - 1e-6
    for sign in (-1, 1):
        noisy = clear + sign * FP32_BATCH_NOISE * torch.tensor(
            [[1.0 if k == 7 else -1.0 for k in range(10)]]
        )
        assert int(sample_tokens(noisy, greedy, seed, step)) == 3

    draws = 20000
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(draws, 1000, generator=generator)  # SmolLM2's logit spread
    seeds, steps = torch.arange(draws), torch.zeros(draws, dtype=torch.long)
    ones = torch.ones(draws)
    base = sample_tokens(logits, ones, seeds, steps)
    flipped = {}
    # Standard deviations of logits alone - batched measured on SmolLM2 (fp32, bf16).
    for name, scale in (("fp32", 7e-6), ("bf16", 0.055)):
        noise = scale * torch.randn(draws, 1000, generator=generator)
        flipped[name] = float(
            (sample_tokens(logits + noise, ones, seeds, steps) != base).float().mean()
        )
    assert flipped["fp32"] < 1e-3, flipped
    assert flipped["bf16"] > 0.01, flipped
    print(f"tokens flipped per sampled step: {flipped}")
