"""A decode-step attention for CPUs, registered with transformers as `introspection_decode`.

With one query token per row, torch's CPU `scaled_dot_product_attention` (the flash kernel)
spends milliseconds per call on a few kilobytes of work: on SmolLM2 (32 rows, 9 query and 3
key/value heads, ~200 cached positions, bf16, 2 cores) it was a quarter of the decode loop's
time (`benchmarks/decode.py --profile`). Two batched matmuls with the query heads of each
key/value head stacked as rows do the same arithmetic far faster, without repeating the
cache per query head. Every other call (prefill, softcapping, attention sinks, output of the
weights) goes to transformers' own `sdpa` unchanged, so only the decode step differs, and it
computes eager attention's formula (fp32 softmax, cast back), row by row.
"""

from __future__ import annotations

from typing import Any

import torch

#: The name models are switched to (`LoadedModel` does it for CPU models whose attention is sdpa).
NAME = "introspection_decode"
#: Keyword arguments some architectures pass that the fast path does not implement.
_UNSUPPORTED = ("softcap", "sinks", "s_aux", "position_bias", "output_attentions")


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention for [B, H, 1, D] queries; anything else is handed to transformers' sdpa.

    Returns:
        (output [B, 1, H, D], None), as transformers' attention functions return it.

    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    unsupported = any(kwargs.get(name) not in (None, False) for name in _UNSUPPORTED)
    if query.shape[2] != 1 or dropout or unsupported or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    batch, heads, _, width = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    # [B, KV, G, D]: the G query heads sharing a key/value head become G query rows of it.
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, width)
    scale = scaling if scaling is not None else width**-0.5
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale
    if attention_mask is not None:
        mask = attention_mask[..., :length]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    weights = torch.softmax(scores, dim=-1).to(value.dtype)
    output = torch.matmul(weights, value)  # [B, KV, G, D]
    return output.reshape(batch, heads, 1, width).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register the attention (and sdpa's mask format for it) with transformers; return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
