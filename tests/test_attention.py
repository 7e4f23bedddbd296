"""The CPU decode-step attention: same result as transformers' sdpa, used only where it pays."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from introspection_bench import attention
from introspection_bench.models import wrap_model


class _Module(torch.nn.Module):
    """What transformers' attention functions read off the attention module."""

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def _inputs(batch: int, heads: int, kv_heads: int, queries: int, length: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(0)
    shape = (batch, kv_heads, length, 16)
    query = torch.randn(batch, heads, queries, 16, generator=generator).to(dtype)
    key = torch.randn(shape, generator=generator).to(dtype)
    value = torch.randn(shape, generator=generator).to(dtype)
    # Left padding: row i has i masked slots (bool, True = attend), as sdpa_mask builds it.
    mask = torch.ones(batch, 1, queries, length, dtype=torch.bool)
    for row in range(batch):
        mask[row, :, :, :row] = False
    return query, key, value, mask


@pytest.mark.parametrize(("heads", "kv_heads"), [(9, 3), (4, 4), (8, 1)])
@pytest.mark.parametrize("masked", [True, False])
def test_decode_step_matches_sdpa(heads, kv_heads, masked):
    query, key, value, mask = _inputs(5, heads, kv_heads, 1, 37, torch.float32)
    module = _Module(heads // kv_heads)
    mask = mask if masked else None
    ours, _ = attention.decode_attention(module, query, key, value, mask, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    assert ours.shape == theirs.shape == (5, 1, heads, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_a_float_mask_is_added_like_sdpa_adds_it():
    query, key, value, mask = _inputs(3, 6, 2, 1, 20, torch.float32)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    module = _Module(3)
    ours, _ = attention.decode_attention(module, query, key, value, additive)
    theirs, _ = sdpa_attention_forward(module, query, key, value, additive)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_bf16_decode_step_is_as_close_to_fp32_as_sdpa_is():
    query, key, value, mask = _inputs(8, 9, 3, 1, 200, torch.float32)
    module = _Module(3)
    exact, _ = sdpa_attention_forward(module, query, key, value, mask)
    half = [t.to(torch.bfloat16) for t in (query, key, value)]
    ours, _ = attention.decode_attention(module, *half, mask)
    theirs, _ = sdpa_attention_forward(module, *half, mask)
    ours_error = (ours.float() - exact).abs().mean()
    sdpa_error = (theirs.float() - exact).abs().mean()
    assert ours_error <= 1.5 * sdpa_error, (ours_error, sdpa_error)


def test_prefill_and_softcapped_calls_are_sdpas_own():
    query, key, value, mask = _inputs(2, 4, 2, 6, 6, torch.float32)
    module = _Module(2)
    ours, _ = attention.decode_attention(module, query, key, value, mask)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask)
    assert torch.equal(ours, theirs)
    query, key, value, mask = _inputs(2, 4, 2, 1, 6, torch.float32)
    with pytest.raises(ValueError, match="softcap"):  # sdpa's own refusal, not a silent ignore
        attention.decode_attention(module, query, key, value, mask, softcap=30.0)


@pytest.mark.parametrize("model_type", ["llama", "qwen3", "gemma3_text"])
def test_half_precision_cpu_models_decode_with_it_and_fp32_keeps_sdpa(
    model_type, tiny_builder, smollm2_tokenizer
):
    tiny = tiny_builder(model_type)
    assert tiny.model.config._attn_implementation == "sdpa"  # fp32: unchanged
    model = tiny.model.to(torch.bfloat16)
    half = wrap_model(model, smollm2_tokenizer, spec="tiny-bf16")
    assert half.model.config._attn_implementation == attention.NAME
    # The attention implementation is not part of the model's identity.
    model.set_attn_implementation("sdpa")
    assert wrap_model(model, smollm2_tokenizer, spec="tiny-bf16").fingerprint == half.fingerprint
    ids = smollm2_tokenizer(
        ["a short one", "a somewhat longer prompt here"], return_tensors="pt", padding=True
    )
    with torch.inference_mode():
        first = half.model(**ids, use_cache=True)
        step = first.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([ids["attention_mask"], torch.ones_like(step)], dim=1)
        out = half.model(input_ids=step, attention_mask=mask, cache=first.past_key_values)
    assert torch.isfinite(out.logits).all()
