"""Decode throughput on the paper's Exp 1 workload: our loop vs HF `generate` with per-row steering.

Both sides do the same work: the paper's Exp 1 prompt (trial 1), one concept vector per trial
(the paper's `last_token` vectors of the first concept words, at block round(0.67 x layers)),
scaled to `--dose` x the median residual norm there (0.43: the paper's dose on SmolLM2),
injected from the "\\n\\nTrial 1" token through every generated token; `--new-tokens` new
tokens, temperature 1 (no top-k/top-p), natural EOS.

- ours: `Decoder` on a model loaded with `load_model` (default batch size). In bf16/fp16 on
  the CPU that model decodes with `attention.decode_attention`; `ours_sdpa` then runs ours again
  with torch's sdpa, and `decode_attention_speedup` is ours over it (same run, same work).
  On the CPU its linear layers multiply with oneDNN-packed weights (`packed_linear`);
  `ours_dense` runs ours with torch's dense linear, and `packed_linear_speedup` is ours over it.
- baseline: `model.generate` on a second, freshly loaded model object (plain
  `AutoModelForCausalLM.from_pretrained`, `--baseline-attn`), all trials in one batch, the
  per-row vectors added by one plain forward hook on the block (as the public replications
  steer: the prefill's window positions, then every decode step).

Repetitions are interleaved (order alternating) after one warm-up of each side; figures are
medians. Useful tokens are the tokens up to and including EOS (what a trial needs; batched
`generate` keeps decoding finished rows until the last one stops). A separate instrumented run
of ours says where its time goes. Prints one JSON object (also written to `--out`).

Usage:
  python benchmarks/decode.py --dtype bf16 --trials 32,64 --reps 3 --out benchmarks/x.json
  python benchmarks/decode.py --random-config llama-32x4096 --tokenizer DIR --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from introspection_bench import attention, generation, packed_linear  # noqa: E402
from introspection_bench.chat import SpanRef, render_chat  # noqa: E402
from introspection_bench.concepts import extract_concept_vectors  # noqa: E402
from introspection_bench.generation import (  # noqa: E402
    Decoder,
    GenerationRequest,
    seed_from_id,
    stop_token_ids,
)
from introspection_bench.hooks import InjectionSpec, RowInjections  # noqa: E402
from introspection_bench.models import (  # noqa: E402
    load_model,
    resolve_device,
    resolve_dtype,
    wrap_model,
)
from introspection_bench.stimuli import load_stimuli  # noqa: E402


def _random_model(args: argparse.Namespace) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    layers, hidden = (int(x) for x in args.random_config.removeprefix("llama-").split("x"))
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=int(hidden * 3.5),
        num_hidden_layers=layers,
        num_attention_heads=hidden // 128,
        num_key_value_heads=max(1, hidden // 512),
        max_position_embeddings=4096,
        attn_implementation=args.baseline_attn,
    )
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device=device, dtype=resolve_dtype(args.dtype, device))
    return model, tokenizer


def load_both(args: argparse.Namespace) -> tuple[Any, Any]:
    """(ours: a LoadedModel, theirs: a separately loaded plain HF model on the same weights)."""
    if args.random_config:
        model, tokenizer = _random_model(args)
        ours = wrap_model(model, tokenizer, spec=f"random:{args.random_config}")
        theirs, _ = _random_model(args)  # same seed: same weights, a different object
        return ours, theirs.eval()
    from transformers import AutoModelForCausalLM

    ours = load_model(args.model, device=args.device, dtype=args.dtype)
    directory = ours.model.config._name_or_path
    theirs = AutoModelForCausalLM.from_pretrained(
        directory, dtype=ours.dtype, attn_implementation=args.baseline_attn, use_kernels=False
    ).to(ours.device)
    return ours, theirs.eval()


def exp1_requests(lm: Any, count: int, args: argparse.Namespace) -> list[GenerationRequest]:
    """`count` Exp 1 trials, each injecting its own concept vector at the paper's dose."""
    stimuli = load_stimuli()
    turns = stimuli.turns(stimuli.template("injected_thought"))
    prompt = render_chat(lm.tokenizer, turns, {"window": SpanRef.of(turns, 2, "\n\nTrial 1")})
    start = prompt.spans["window"][0]
    layer = round(0.67 * lm.n_layers)
    words = stimuli.words("concept_words")
    vectors = extract_concept_vectors(lm, words, stimuli.words("baseline_words"), [layer])[layer]
    requests = []
    for i in range(count):
        vector = vectors.vectors[i % len(words)]
        strength = args.dose * vectors.median_residual_norm / float(vector.norm())
        requests.append(
            GenerationRequest(
                f"t{i}",
                prompt.input_ids,
                InjectionSpec(layer, vector, strength, start),
                args.new_tokens,
                1.0,
                seed_from_id(f"t{i}", args.seed),
            )
        )
    return requests


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_ours(lm: Any, requests: list[GenerationRequest], batch: int | None) -> list[int]:
    """Useful tokens per trial (EOS counted)."""
    completions = Decoder(lm, batch).generate(requests)
    return [len(c.token_ids) + (c.stop_reason == "eos") for c in completions]


class RowSteering:
    """A plain forward hook adding each row's vector.

    The vector is added from `start` on (prefill), then at every step.
    """

    def __init__(self, deltas: torch.Tensor, start: int):
        self.deltas, self.start = deltas[:, None, :], start

    def __call__(self, module: Any, args: Any, output: Any) -> Any:
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        if hidden.shape[1] > 1:
            mask = torch.zeros(1, hidden.shape[1], 1, dtype=hidden.dtype, device=hidden.device)
            mask[:, self.start :] = 1
            hidden = hidden + mask * self.deltas
        else:
            hidden = hidden + self.deltas
        return hidden if isinstance(output, torch.Tensor) else (hidden, *output[1:])


def run_theirs(
    model: Any, lm: Any, requests: list[GenerationRequest], stops: frozenset[int], seed: int
) -> list[int]:
    """HF generate, all rows in one batch, per-row steering hook; useful tokens per trial."""
    from transformers import GenerationConfig

    first = requests[0]
    layer, start = first.injection.layer, first.injection.start
    deltas = torch.stack([r.injection.strength * r.injection.vector.float() for r in requests]).to(
        device=lm.device, dtype=lm.dtype
    )
    ids = torch.tensor([r.input_ids for r in requests], device=lm.device)
    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=first.max_new_tokens,
        eos_token_id=sorted(stops),
        pad_token_id=lm.tokenizer.pad_token_id,
    )
    blocks = model.model.layers if hasattr(model, "model") else model.transformer.h
    handle = blocks[layer].register_forward_hook(RowSteering(deltas, start))
    torch.manual_seed(seed)
    try:
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
            )
    finally:
        handle.remove()
    useful = []
    for row in out[:, ids.shape[1] :].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        useful.append(cut)
    return useful


def profile_ours(lm: Any, requests: list[GenerationRequest]) -> dict[str, float]:
    """Seconds of one instrumented run of ours, split by where the loop spends them."""
    spent: dict[str, float] = defaultdict(float)
    patches: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: Any) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            _sync()
            begin = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _sync()
                spent[label(args) if callable(label) else label] += time.perf_counter() - begin

        patches.append((owner, name, original))
        setattr(owner, name, timed)

    wrap(
        Decoder, "_forward", lambda a: "forward_prefill" if a[1].shape[1] > 1 else "forward_decode"
    )
    wrap(Decoder, "_prefix_cache", "shared_prefix")
    wrap(RowInjections, "add_to", "hooks")
    wrap(Decoder, "_sample", "sampling")
    for name in ("_select", "_compact", "_merge"):
        wrap(generation, name, "cache_bookkeeping")
    try:
        _sync()
        begin = time.perf_counter()
        Decoder(lm).generate(requests)
        _sync()
        total = time.perf_counter() - begin
    finally:
        for owner, name, original in patches:
            setattr(owner, name, original)
    # Hooks run inside the forwards: the model's own share is the forwards minus the hooks.
    split = dict(spent)
    split["forward_decode"] = split.get("forward_decode", 0.0) - split["hooks"]
    split["python_and_rest"] = total - sum(split.values())
    split["total"] = total
    return {k: round(v, 3) for k, v in split.items()}


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _with_attention(lm: Any, implementation: str, run: Any, *args: Any) -> Any:
    """Run `run(*args)` with `lm`'s attention switched to `implementation`, then switch back."""
    before = lm.model.config._attn_implementation
    lm.model.set_attn_implementation(implementation)
    try:
        return run(*args)
    finally:
        lm.model.set_attn_implementation(before)


def _with_dense_linears(lm: Any, run: Any, *args: Any) -> Any:
    """Run `run(*args)` with `lm`'s packed linear layers multiplying densely, as torch's do."""
    with packed_linear.dense_linears(lm.model):
        return run(*args)


def measure(lm: Any, theirs: Any, count: int, args: argparse.Namespace) -> dict[str, Any]:
    requests = exp1_requests(lm, count, args)
    stops = stop_token_ids(lm)
    batch = args.batch_size
    sides = {
        "ours": lambda rep: run_ours(lm, requests, batch),
        "theirs": lambda rep: run_theirs(theirs, lm, requests, stops, args.seed + rep),
    }
    implementation = lm.model.config._attn_implementation
    if implementation == attention.NAME:
        # Ours again with torch's sdpa for the decode step: what the decode attention buys.
        sides["ours_sdpa"] = lambda rep: _with_attention(lm, "sdpa", run_ours, lm, requests, batch)
    if packed_linear.packed_count(lm.model):
        # Ours again with torch's dense linear layers: what the packed weights buy.
        sides["ours_dense"] = lambda rep: _with_dense_linears(lm, run_ours, lm, requests, batch)
    times: dict[str, list[float]] = {side: [] for side in sides}
    tokens: dict[str, list[int]] = {side: [] for side in sides}
    for side in sides:
        sides[side](0)  # warm-up
    loads = [_load()]
    for rep in range(args.reps):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for side in order:
            _sync()
            begin = time.perf_counter()
            useful = sides[side](rep)
            _sync()
            times[side].append(time.perf_counter() - begin)
            tokens[side].append(sum(useful))
        loads.append(_load())
    result: dict[str, Any] = {"trials": count, "load_avg_1_5_15": loads}
    result["ours_attention"] = implementation
    if "ours_sdpa" in sides:
        pairs = zip(
            tokens["ours"], times["ours"], tokens["ours_sdpa"], times["ours_sdpa"], strict=True
        )
        speedups = [(to / so) / (ts / ss) for to, so, ts, ss in pairs]
        result["decode_attention_speedup"] = round(statistics.median(speedups), 2)
    if "ours_dense" in sides:
        pairs = zip(
            tokens["ours"], times["ours"], tokens["ours_dense"], times["ours_dense"], strict=True
        )
        speedups = [(to / so) / (td / sd) for to, so, td, sd in pairs]
        result["packed_linear_speedup"] = round(statistics.median(speedups), 2)
    for side in sides:
        rates = [t / s for t, s in zip(tokens[side], times[side], strict=True)]
        result[side] = {
            "seconds": [round(t, 2) for t in times[side]],
            "useful_tokens_per_s": round(statistics.median(rates), 1),
            "trials_per_s": round(statistics.median(count / t for t in times[side]), 3),
            "mean_tokens_per_trial": round(statistics.mean(tokens[side]) / count, 1),
        }
    # Per repetition (both sides under the same load), then the median of those ratios.
    ratios = [
        (to / so) / (tt / st)
        for to, so, tt, st in zip(
            tokens["ours"], times["ours"], tokens["theirs"], times["theirs"], strict=True
        )
    ]
    result["useful_tokens_per_s_ratio"] = round(statistics.median(ratios), 2)
    result["trials_per_s_ratio"] = round(
        statistics.median(st / so for so, st in zip(times["ours"], times["theirs"], strict=True)), 2
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--random-config", default=None, help="e.g. llama-32x4096 (8B shape)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir for --random-config")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--trials", default="32,64", help="comma-separated trial counts")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--dose", type=float, default=0.43, help="x median residual norm")
    parser.add_argument("--batch-size", type=int, default=None, help="ours (default automatic)")
    parser.add_argument("--baseline-attn", default="sdpa", help="sdpa or eager")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lm, theirs = load_both(args)
    results: dict[str, Any] = {
        "model": lm.spec,
        "device": str(lm.device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(),
        "baseline": f"HF generate, {args.baseline_attn}, fresh model object, one batch, hook",
        "dose": args.dose,
        "new_tokens": args.new_tokens,
        "runs": [measure(lm, theirs, int(n), args) for n in args.trials.split(",")],
    }
    if not args.no_profile:
        count = int(args.trials.split(",")[0])
        results["profile_ours_s"] = profile_ours(lm, exp1_requests(lm, count, args))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
