"""The engine's invariants on CUDA, on a random-weight Llama (no weights need to travel).

Run on a GPU machine (CI has none):
  python benchmarks/gpu_check.py --tokenizer DIR
Prints one JSON object; exits 1 if an invariant fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from introspection_bench.generation import Decoder, GenerationRequest, auto_batch_size, seed_from_id  # noqa: E402
from introspection_bench.hooks import InjectionSpec, RowInjections, hook_count, inject, record  # noqa: E402
from introspection_bench.models import wrap_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    args = parser.parse_args()
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    results: dict[str, object] = {"device": torch.cuda.get_device_name(0)}
    failures = []
    for dtype in (torch.float32, torch.bfloat16):
        lm = wrap_model(
            LlamaForCausalLM(config).to("cuda", dtype), tokenizer, spec="random:llama-4x256"
        )
        prompts = [
            tokenizer(t)["input_ids"]
            for t in (
                "Hello there, how are",
                "A much longer prompt that goes on and on about things",
                "Hi",
            )
        ]
        vector = torch.randn(lm.d_model)
        requests = [
            GenerationRequest(
                f"r{i}",
                tuple(p),
                InjectionSpec(2, vector, 4.0, 1) if i % 2 else None,
                16,
                t,
                seed_from_id(f"r{i}"),
            )
            for i, p in enumerate(prompts)
            for t in (0.0, 1.0)
        ]
        requests = [
            GenerationRequest(
                f"{r.trial_id}-{k}",
                r.input_ids,
                r.injection,
                r.max_new_tokens,
                r.temperature,
                r.seed,
            )
            for k, r in enumerate(requests)
        ]
        batched = Decoder(lm, 8).generate(requests)
        alone = [Decoder(lm, 1).generate([r])[0] for r in requests]
        same = sum(a.token_ids == b.token_ids for a, b in zip(batched, alone, strict=True))
        name = str(dtype).removeprefix("torch.")
        results[f"batched_equals_alone_{name}"] = f"{same}/{len(requests)}"
        if dtype == torch.float32 and same != len(requests):
            failures.append(f"batched != alone in fp32 ({same}/{len(requests)})")
        # Exact delta inside the window, equality outside, on CUDA.
        ids = torch.tensor([prompts[1]], device="cuda")
        positions = torch.arange(ids.shape[1], device="cuda")[None]
        with record(lm, [2]) as plain:
            lm.model(input_ids=ids, position_ids=positions)
        rows = RowInjections([InjectionSpec(2, vector, 4.0, 3, 6)], lm.d_model, "cuda", dtype)
        rows.positions = positions
        with inject(lm, rows), record(lm, [2]) as hooked:
            lm.model(input_ids=ids, position_ids=positions)
        expected = rows.add_to(plain[2], 2, positions)
        exact = (
            torch.equal(hooked[2], expected)
            and torch.equal(hooked[2][:, :3], plain[2][:, :3])
            and torch.equal(hooked[2][:, 6:], plain[2][:, 6:])
        )
        results[f"hook_exact_{name}"] = exact
        if not exact:
            failures.append(f"hook not exact in {name}")
        if hook_count(lm) != 0:
            failures.append("hooks left behind")
        results[f"auto_batch_size_{name}"] = auto_batch_size(lm)
    results["failures"] = failures
    print(json.dumps(results, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
