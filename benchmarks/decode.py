"""Throughput ratios of our decoding loop, measured in one run (same dtype on both sides).

Prints one JSON object:
- injected_vs_plain_generate: tokens/s of our loop with an active per-row injection over
  `model.generate` on the same batch, same fixed length, no hooks (prefix sharing and refill
  off: the cost of the loop and hooks alone). Goal >= 0.95.
- trials_vs_plain_generate: trials/s on Exp 1 trials (paper prompt, 100 new tokens,
  temperature 1, natural EOS) over `model.generate` on the same trials in batches of 32.
  Goal >= 1.5.
- batch32_vs_batch1: trials/s of our loop at batch 32 over batch 1. Goal >= 8.
- vs_one_at_a_time_hook: our trials/s over `model.generate` with one forward hook, one trial
  at a time (how most public replications run). Goal >= 8.

Usage:
  python benchmarks/decode.py                       # SmolLM2 on the CPU
  python benchmarks/decode.py --random-config llama-16x2048 --tokenizer DIR --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from introspection_bench.chat import SpanRef, render_chat  # noqa: E402
from introspection_bench.generation import Decoder, GenerationRequest, seed_from_id  # noqa: E402
from introspection_bench.hooks import InjectionSpec  # noqa: E402
from introspection_bench.models import load_model, resolve_device, resolve_dtype, wrap_model  # noqa: E402
from introspection_bench.stimuli import load_stimuli  # noqa: E402


def build_model(args: argparse.Namespace):
    if not args.random_config:
        return load_model(args.model, device=args.device, dtype=args.dtype)
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    layers, hidden = (int(x) for x in args.random_config.removeprefix("llama-").split("x"))
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 256,
        max_position_embeddings=4096,
    )
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device=device, dtype=resolve_dtype(args.dtype, device))
    return wrap_model(model, tokenizer, spec=f"random:{args.random_config}")


def exp1_requests(lm, count: int, new_tokens: int, temperature: float) -> list[GenerationRequest]:
    stimuli = load_stimuli()
    turns = stimuli.turns(stimuli.template("injected_thought"))
    prompt = render_chat(lm.tokenizer, turns, {"window": SpanRef.of(turns, 2, "\n\nTrial 1")})
    start = prompt.spans["window"][0]
    layer = round(0.67 * lm.n_layers)
    generator = torch.Generator().manual_seed(0)
    requests = []
    for i in range(count):
        vector = torch.randn(lm.d_model, generator=generator)
        injection = InjectionSpec(layer, vector, 0.5, start) if i % 2 == 0 else None
        requests.append(
            GenerationRequest(
                f"t{i}", prompt.input_ids, injection, new_tokens, temperature, seed_from_id(f"t{i}")
            )
        )
    return requests


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def plain_generate(lm, requests, batch: int, hook: bool = False, fixed: bool = False) -> int:
    """model.generate over the requests in batches; returns generated tokens."""
    produced = 0
    layer = round(0.67 * lm.n_layers)
    for offset in range(0, len(requests), batch):
        chunk = requests[offset : offset + batch]
        ids = torch.tensor([r.input_ids for r in chunk], device=lm.device)
        handle = None
        if hook:
            delta = (
                chunk[0].injection.vector.to(lm.device, lm.dtype) * 0.5
                if chunk[0].injection
                else None
            )

            def add(module, args, output, delta=delta):
                return output if delta is None else output + delta

            handle = lm.layers[layer].register_forward_hook(add)
        try:
            sample = chunk[0].temperature > 0
            out = lm.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=chunk[0].max_new_tokens,
                min_new_tokens=chunk[0].max_new_tokens if fixed else None,
                do_sample=sample,
                temperature=chunk[0].temperature if sample else None,
                top_k=None,
                top_p=None,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
        finally:
            if handle is not None:
                handle.remove()
        produced += int((out[:, ids.shape[1] :] != lm.tokenizer.pad_token_id).sum())
    return produced


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--random-config", default=None, help="e.g. llama-16x2048 (random weights, no download)"
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir for --random-config")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--fixed-tokens", type=int, default=32)
    parser.add_argument(
        "--single-trials", type=int, default=4, help="trials for the batch-1 measurements"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lm = build_model(args)
    results: dict[str, object] = {
        "model": lm.spec,
        "device": str(lm.device),
        "dtype": str(lm.dtype),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    # Warm-up (allocations, kernels).
    Decoder(lm, 4).generate(exp1_requests(lm, 4, 4, 0.0))

    fixed = exp1_requests(lm, 32, args.fixed_tokens, 0.0)
    ours = timed(
        lambda: Decoder(lm, 32, share_prefix=False, refill=False, stop_at_eos=False).generate(fixed)
    )
    theirs = timed(lambda: plain_generate(lm, fixed, 32, fixed=True))
    tokens = 32 * args.fixed_tokens
    results["plain_generate_tokens_per_s"] = tokens / theirs
    results["ours_injected_tokens_per_s"] = tokens / ours
    results["injected_vs_plain_generate"] = theirs / ours

    trials = exp1_requests(lm, args.trials, 100, 1.0)
    ours_32 = timed(lambda: Decoder(lm, 32).generate(trials))
    plain_32 = timed(lambda: plain_generate(lm, trials, 32))
    results["ours_trials_per_s_batch32"] = args.trials / ours_32
    results["plain_generate_trials_per_s_batch32"] = args.trials / plain_32
    results["trials_vs_plain_generate"] = plain_32 / ours_32

    singles = trials[: args.single_trials]
    ours_1 = timed(lambda: Decoder(lm, 1).generate(singles))
    hooked_1 = timed(lambda: plain_generate(lm, singles, 1, hook=True))
    results["ours_trials_per_s_batch1"] = len(singles) / ours_1
    results["hooked_generate_trials_per_s_batch1"] = len(singles) / hooked_1
    results["batch32_vs_batch1"] = (
        results["ours_trials_per_s_batch32"] / results["ours_trials_per_s_batch1"]
    )
    results["vs_one_at_a_time_hook"] = (
        results["ours_trials_per_s_batch32"] / results["hooked_generate_trials_per_s_batch1"]
    )
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
