"""Batched decoding with a KV cache, per-row injections, per-row seeds and row refill.

A trial's tokens depend only on its own prompt, injection and seed, never on which trials share
its batch: every row samples by inverse CDF with a uniform that is a hash of (its seed, its
step), computed for the whole batch in a few tensor ops (no per-row RNG calls), positions are
per row, and the attention mask hides padding. Two wastes of plain batched `generate` are avoided:
- the token prefix that all rows of a group share (everything before the injection window of
  Exp 1) is encoded once at batch 1 and its KV cache is copied to every row;
- rows that stopped are retired at once and, when half the batch is free, waiting trials are
  prefilled and merged into the running batch (continuous batching).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from introspection_bench.errors import InjectionError
from introspection_bench.hooks import InjectionSpec, RowInjections, inject

if TYPE_CHECKING:
    from transformers.cache_utils import DynamicLayer

    from introspection_bench.models import LoadedModel

#: Shared prefixes shorter than this are not worth a separate forward.
MIN_SHARED_PREFIX = 8


def seed_from_id(trial_id: str, base_seed: int = 0) -> int:
    """A 63-bit seed derived from a trial id and the run seed (no global RNG state)."""
    digest = hashlib.sha256(f"{base_seed}:{trial_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class GenerationRequest:
    """One trial to decode."""

    trial_id: str
    """Stable id; results are returned in request order and keyed by it."""
    input_ids: tuple[int, ...]
    """The rendered prompt's tokens."""
    injection: InjectionSpec | None = None
    """Where and what to inject; None for a control row."""
    max_new_tokens: int = 100
    """Upper bound on generated tokens (the row stops earlier at EOS)."""
    temperature: float = 1.0
    """Sampling temperature; 0 means greedy."""
    seed: int = 0
    """Seed of this row's own generator (see `seed_from_id`)."""

    def __post_init__(self) -> None:
        if not self.input_ids:
            raise InjectionError(f"trial {self.trial_id}: empty prompt")
        if self.temperature < 0 or self.max_new_tokens < 1:
            raise InjectionError(
                f"trial {self.trial_id}: temperature {self.temperature} / max_new_tokens "
                f"{self.max_new_tokens} invalid; use temperature >= 0 and max_new_tokens >= 1"
            )
        if self.injection is not None:
            self.injection.check_fits(len(self.input_ids))


@dataclass(frozen=True)
class Completion:
    """What one trial generated."""

    trial_id: str
    token_ids: tuple[int, ...]
    """Generated tokens, EOS excluded."""
    text: str
    """Decoded `token_ids`, special tokens skipped."""
    stop_reason: str
    """'eos' or 'length'."""


@dataclass
class _Batch:
    """The running batch: rows in flight and their KV cache."""

    requests: list[int]
    cache: Any
    attention_mask: torch.Tensor
    """[B, S] 1 on real tokens, 0 on padding slots."""
    next_position: torch.Tensor
    """[B] absolute position of each row's next token."""
    logits: torch.Tensor
    """[B, V] logits for each row's next token."""
    rows: RowInjections
    seeds: torch.Tensor
    """[B] int64 per-row sampling seeds."""
    tokens: list[list[int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.requests)


class Decoder:
    """Decodes many `GenerationRequest`s in batches on one model.

    Args:
        lm: The model.
        batch_size: Rows in flight; None picks one from free memory (32 on the CPU).
        share_prefix: Encode the common prompt prefix of a group once.
        refill: Merge waiting trials into the running batch as rows finish.
        stop_at_eos: Stop a row at EOS (off only for fixed-length benchmarks).

    """

    def __init__(
        self,
        lm: LoadedModel,
        batch_size: int | None = None,
        *,
        share_prefix: bool = True,
        refill: bool = True,
        stop_at_eos: bool = True,
    ):
        self.lm = lm
        self.batch_size = batch_size or auto_batch_size(lm)
        self.share_prefix = share_prefix
        self.refill = refill
        # Benchmarks decode a fixed length: no stop tokens then.
        self.stop_ids = stop_token_ids(lm) if stop_at_eos else frozenset()
        self._prefix: tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_complete: Callable[[Completion], None] | None = None,
    ) -> list[Completion]:
        """Decode every request; results in request order.

        Args:
            requests: The trials.
            on_complete: Called with each completion as soon as its row stops (for streaming
                records to disk, so an interrupt loses nothing finished).

        Returns:
            One completion per request.

        """
        results: dict[int, Completion] = {}
        waiting = deque(range(len(requests)))
        batch: _Batch | None = None
        with torch.inference_mode():
            while waiting or (batch is not None and batch.size):
                try:
                    batch = self._admit(requests, waiting, batch)
                    self._step(requests, batch, results, on_complete)
                except torch.OutOfMemoryError:
                    # Wherever it struck (prefill, merge, retire, sample, forward), the batch may
                    # be half-updated: drop it and requeue every unfinished trial.
                    batch = None
                    waiting = self._shrink_after_oom(len(requests), results)
        return [results[i] for i in range(len(requests))]

    def _shrink_after_oom(self, count: int, results: dict[int, Completion]) -> deque[int]:
        """Halve the batch size; return the unfinished trials.

        Their seeds make reruns identical.
        """
        if self.batch_size <= 1:
            raise InjectionError(
                "out of memory at batch size 1; use a smaller model, --dtype bf16 or another device"
            )
        self.batch_size //= 2
        self._prefix = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return deque(i for i in range(count) if i not in results)

    def _admit(
        self, requests: Sequence[GenerationRequest], waiting: deque[int], batch: _Batch | None
    ) -> _Batch:
        active = 0 if batch is None else batch.size
        free = self.batch_size - active
        can_merge = batch is None or active == 0 or (self.refill and _mergeable(batch.cache))
        if batch is not None and (
            not waiting or free <= 0 or not can_merge or (active and free < self.batch_size // 2)
        ):
            return batch
        group = [waiting.popleft() for _ in range(min(free, len(waiting)))]
        fresh = self._prefill(requests, group)
        if batch is None or active == 0:
            return fresh
        merged = _merge(batch, fresh)
        _compact(merged)
        return merged

    def _prefill(self, requests: Sequence[GenerationRequest], group: list[int]) -> _Batch:
        lm = self.lm
        prompts = [requests[i].input_ids for i in group]
        sharing = self.share_prefix and not self._sliding()
        shared = self._shared_length(requests, group) if sharing else 0
        cache, prefix_mask = self._prefix_cache(prompts[0][:shared], len(group))
        tails = [p[shared:] for p in prompts]
        width = max(len(t) for t in tails)
        pad = lm.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(t)) + list(t) for t in tails], device=lm.device)
        tail_mask = torch.tensor(
            [[0] * (width - len(t)) + [1] * len(t) for t in tails], device=lm.device
        )
        mask = torch.cat([prefix_mask, tail_mask], dim=1)
        positions = (shared + tail_mask.cumsum(-1) - 1).masked_fill(tail_mask == 0, -1)
        rows = RowInjections(
            [requests[i].injection for i in group], lm.d_model, lm.device, lm.dtype
        )
        logits = self._forward(ids, mask, positions, cache, rows)
        seeds = torch.tensor([requests[i].seed for i in group], dtype=torch.long, device=lm.device)
        next_position = torch.tensor([len(p) for p in prompts], device=lm.device)
        return _Batch(
            list(group), cache, mask, next_position, logits, rows, seeds, [[] for _ in group]
        )

    def _sliding(self) -> bool:
        # A shared prefix puts padding between the prefix and each row's tail. Sliding-window
        # layers measure their window in cache slots, so a padded row would see padding instead
        # of its own earlier tokens (and a primed sliding cache loses its true length).
        from transformers import DynamicCache

        return not _mergeable(DynamicCache(config=self.lm.model.config))

    def _shared_length(self, requests: Sequence[GenerationRequest], group: list[int]) -> int:
        prompts = [requests[i].input_ids for i in group]
        limit = min(len(p) for p in prompts) - 1  # keep at least one token per row to prefill
        for i in group:
            injection = requests[i].injection
            if injection is not None:
                limit = min(limit, max(1, injection.start))
        length = 0
        first = prompts[0]
        while length < limit and all(p[length] == first[length] for p in prompts):
            length += 1
        return length if length >= MIN_SHARED_PREFIX else 0

    def _prefix_cache(self, prefix: tuple[int, ...], batch: int) -> tuple[Any, torch.Tensor]:
        from transformers import DynamicCache

        lm = self.lm
        cache = _presized(DynamicCache(config=lm.model.config))
        mask = torch.ones(batch, len(prefix), dtype=torch.long, device=lm.device)
        if not prefix:
            return cache, mask
        if self._prefix is None or self._prefix[0] != prefix:
            single = DynamicCache(config=lm.model.config)
            ids = torch.tensor([prefix], device=lm.device)
            positions = torch.arange(len(prefix), device=lm.device)[None]
            lm.model(
                input_ids=ids,
                attention_mask=mask[:1],
                position_ids=positions,
                use_cache=True,
                logits_to_keep=torch.tensor([len(prefix) - 1], device=lm.device),
                **_cache_kwarg(lm, single),
            )
            # Sharing a prefix needs plain dynamic layers (`_sliding`), each filled just now.
            layers = cast("list[DynamicLayer]", single.layers)
            filled = [
                (cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values))
                for layer in layers
            ]
            self._prefix = (prefix, filled)
        states = self._prefix[1]
        # Prime each cache layer with the batch-1 prefix, then copy it to every row.
        for index, (keys, values) in enumerate(states):
            cache.update(keys.clone(), values.clone(), index)
        cache.batch_repeat_interleave(batch)
        return cache, mask

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        rows: RowInjections,
    ) -> torch.Tensor:
        rows.positions = positions
        # The last position as an index tensor, not `logits_to_keep=1`: a slice hands the output
        # layer a non-contiguous [B, 1, D] view, and torch's matmul then runs a bmm against the
        # [V, D] weight expanded once per row (seconds per 32-row prefill) instead of one mm.
        last = torch.tensor([ids.shape[1] - 1], device=ids.device)
        with inject(self.lm, rows):
            out = self.lm.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions.clamp(min=0),
                use_cache=True,
                logits_to_keep=last,
                **_cache_kwarg(self.lm, cache),
            )
        rows.positions = None
        return out.logits[:, -1, :].float()

    def _step(
        self,
        requests: Sequence[GenerationRequest],
        batch: _Batch,
        results: dict[int, Completion],
        on_complete: Callable[[Completion], None] | None,
    ) -> None:
        tokens = self._sample(requests, batch)
        finished = []
        for row, token in enumerate(tokens.tolist()):
            request = requests[batch.requests[row]]
            stopped = token in self.stop_ids
            if not stopped:
                batch.tokens[row].append(token)
            if stopped or len(batch.tokens[row]) >= request.max_new_tokens:
                finished.append(row)
                completion = Completion(
                    request.trial_id,
                    tuple(batch.tokens[row]),
                    # One sequence of ids decodes to one string.
                    cast(
                        str, self.lm.tokenizer.decode(batch.tokens[row], skip_special_tokens=True)
                    ),
                    "eos" if stopped else "length",
                )
                results[batch.requests[row]] = completion
                if on_complete is not None:
                    on_complete(completion)
        if finished:
            keep = [r for r in range(batch.size) if r not in set(finished)]
            _select(batch, keep)
            _compact(batch)
            tokens = tokens[keep]
        if batch.size:
            self._advance(batch, tokens)

    def _sample(self, requests: Sequence[GenerationRequest], batch: _Batch) -> torch.Tensor:
        device = batch.logits.device
        temperatures = torch.tensor(
            [requests[i].temperature for i in batch.requests], device=device
        )
        steps = torch.tensor([len(t) for t in batch.tokens], dtype=torch.long, device=device)
        return sample_tokens(batch.logits, temperatures, batch.seeds, steps)

    def _advance(self, batch: _Batch, tokens: torch.Tensor) -> None:
        ones = torch.ones(
            batch.size, 1, dtype=batch.attention_mask.dtype, device=batch.attention_mask.device
        )
        batch.attention_mask = torch.cat([batch.attention_mask, ones], dim=1)
        positions = batch.next_position[:, None]
        batch.logits = self._forward(
            tokens[:, None], batch.attention_mask, positions, batch.cache, batch.rows
        )
        batch.next_position = batch.next_position + 1


_MIX_1 = -0x40A7B892E31B1A47  # splitmix64 multipliers as signed int64 (0xBF58476D1CE4E5B9)
_MIX_2 = -0x6B2FB644ECCEEE15  # (0x94D049BB133111EB)
_GOLDEN = -0x61C8864680B583EB  # (0x9E3779B97F4A7C15)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    # Logical shift on int64 (torch's >> is arithmetic).
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def row_uniforms(seeds: torch.Tensor, steps: torch.Tensor, vocab: int) -> torch.Tensor:
    """[B, V] uniforms in (0, 1): splitmix64 of (row seed, row step, token id).

    A row's noise depends only on its own seed and step, never on its batch neighbours, so a
    trial samples the same tokens alone or in any batch, on any device.
    """
    tokens = torch.arange(vocab, dtype=torch.long, device=seeds.device)
    x = seeds[:, None] * _GOLDEN + steps[:, None] * _MIX_2 + tokens[None, :] * _MIX_1
    x = (x ^ _shift_right(x, 30)) * _MIX_1
    x = (x ^ _shift_right(x, 27)) * _MIX_2
    x = x ^ _shift_right(x, 31)
    top24 = _shift_right(x, 40).to(torch.float32)
    return (top24 + 0.5) / float(1 << 24)


def sample_tokens(
    logits: torch.Tensor, temperatures: torch.Tensor, seeds: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """[B] next tokens: argmax where the temperature is 0, else an inverse-CDF draw.

    Args:
        logits: [B, V] float logits.
        temperatures: [B] temperatures (0: greedy).
        seeds: [B] int64 row seeds.
        steps: [B] int64 tokens each row has generated so far.

    Returns:
        [B] int64 token ids. A row's draw depends only on its logits, seed and step: one
        counter-based uniform per row (one hash per row, not one per vocabulary entry).

    """
    greedy = logits.argmax(-1)
    if not bool((temperatures > 0).any()):
        return greedy
    probs = torch.softmax(logits / temperatures.clamp(min=1e-6)[:, None], dim=-1)
    cdf = probs.cumsum(-1)
    draws = row_uniforms(seeds, steps, 1)[:, 0] * cdf[:, -1]
    sampled = torch.searchsorted(cdf, draws[:, None]).squeeze(-1).clamp(max=cdf.shape[-1] - 1)
    return torch.where(temperatures > 0, sampled, greedy)


def _cache_kwarg(lm: LoadedModel, cache: Any) -> dict[str, Any]:
    # transformers 5.24 renamed `past_key_values` to `cache` (the old name warns, then goes in
    # 5.40).
    # A class is hashable; mypy checks `type[Module]` against `Hashable` with `Module.__hash__`.
    return {_cache_keyword(cast(Hashable, type(lm.model))): cache}


@functools.cache
def _cache_keyword(model_class: type[torch.nn.Module]) -> str:
    # Looked up once per model class: inspect.signature on every decode step is measurable.
    return (
        "cache"
        if "cache" in inspect.signature(model_class.forward).parameters
        else "past_key_values"
    )


def _select(batch: _Batch, keep: list[int]) -> None:
    index = torch.tensor(keep, dtype=torch.long, device=batch.attention_mask.device)
    batch.requests = [batch.requests[r] for r in keep]
    batch.tokens = [batch.tokens[r] for r in keep]
    batch.seeds = batch.seeds[index]
    batch.attention_mask = batch.attention_mask[index]
    batch.next_position = batch.next_position[index]
    batch.logits = batch.logits[index]
    batch.rows.select(index)
    if keep:
        batch.cache.batch_select_indices(index)


def _compact(batch: _Batch) -> None:
    """Right-align each row's cached tokens and drop the slots no row uses.

    Rows are cached at explicit positions, so a token's slot index carries no meaning: after
    rows retire or merge, the cache is only as wide as its longest live row.
    """
    mask = batch.attention_mask
    total = mask.shape[1]
    if not batch.size or not _mergeable(batch.cache):
        return
    width = int(mask.sum(1).max())
    if width == total:
        return
    columns = torch.arange(total, device=mask.device)
    # Padding slots sort first, real ones after, each in slot order.
    source = torch.argsort(mask.long() * total + columns, dim=1)[:, total - width :]
    batch.attention_mask = mask.gather(1, source)
    for layer in batch.cache.layers:
        heads, _, key_dim = layer.keys.shape[1:]
        index = source[:, None, :, None]
        layer.keys = layer.keys.gather(2, index.expand(-1, heads, -1, key_dim))
        layer.values = layer.values.gather(2, index.expand(-1, heads, -1, layer.values.shape[3]))


def _mergeable(cache: Any) -> bool:
    # Sliding-window layers keep a truncated cache that cannot be left-padded consistently.
    return all(
        not getattr(layer, "is_sliding", False)
        and type(layer).__name__ in ("DynamicLayer", "PresizedLayer")
        for layer in cache.layers
    )


#: Spare slots a pre-sized cache layer allocates when it must grow (or after a retire/merge).
CACHE_SPARE_SLOTS = 64


def _presized(cache: Any) -> Any:
    """Swap `cache`'s plain dynamic layers for pre-sized ones (sliding layers are kept)."""
    layer_class = _presized_layer_class()
    cache.layers = [
        layer_class() if type(layer).__name__ == "DynamicLayer" else layer for layer in cache.layers
    ]
    return cache


@functools.lru_cache(maxsize=1)
def _presized_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class PresizedLayer(DynamicLayer):  # type: ignore[misc]
        """A dynamic cache layer that writes into spare slots instead of concatenating.

        `DynamicLayer.update` copies the whole layer cache on every decode step (torch.cat);
        this one keeps `CACHE_SPARE_SLOTS` free slots and copies only when they run out or
        when the rows were rebuilt (retire, merge, compaction assign new `keys`/`values`).
        `keys`/`values` stay views of the filled slots, so everything else reads them as usual.
        """

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            # Initialized, the layer holds tensors (`lazy_initialization` sets both).
            self.keys, self._key_slots = _write(
                cast(torch.Tensor, self.keys), getattr(self, "_key_slots", None), key_states
            )
            self.values, self._value_slots = _write(
                cast(torch.Tensor, self.values), getattr(self, "_value_slots", None), value_states
            )
            return self.keys, self.values

    return PresizedLayer


def _write(
    cached: torch.Tensor, slots: torch.Tensor | None, new: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append `new` ([B, H, T, D]) after `cached` inside `slots`; returns (view, slots)."""
    length = cached.shape[-2] if cached.numel() else 0
    total = length + new.shape[-2]
    reusable = (
        slots is not None
        and length > 0
        and cached.data_ptr() == slots.data_ptr()
        and cached.stride() == slots.stride()
        and cached.shape[:2] == slots.shape[:2]
        and slots.shape[2] >= total
    )
    if reusable and slots is not None:
        target = slots
    else:
        target = new.new_empty((*new.shape[:2], total + CACHE_SPARE_SLOTS, new.shape[-1]))
        if length:
            target[:, :, :length] = cached
    target[:, :, length:total] = new
    return target[:, :, :total], target


def _merge(running: _Batch, fresh: _Batch) -> _Batch:
    """Append `fresh`'s rows to `running`, left-padding the shorter KV cache with masked slots."""
    if not _mergeable(fresh.cache):
        raise InjectionError("cannot merge batches whose cache has sliding-window layers")
    width = max(running.attention_mask.shape[1], fresh.attention_mask.shape[1])
    for target, source in zip(running.cache.layers, fresh.cache.layers, strict=True):
        target.keys = torch.cat(
            [_pad_left(target.keys, width, 2), _pad_left(source.keys, width, 2)]
        )
        target.values = torch.cat(
            [_pad_left(target.values, width, 2), _pad_left(source.values, width, 2)]
        )
    running.attention_mask = torch.cat(
        [_pad_left(running.attention_mask, width, 1), _pad_left(fresh.attention_mask, width, 1)]
    )
    running.requests += fresh.requests
    running.tokens += fresh.tokens
    running.seeds = torch.cat([running.seeds, fresh.seeds])
    running.next_position = torch.cat([running.next_position, fresh.next_position])
    running.logits = torch.cat([running.logits, fresh.logits])
    running.rows.extend(fresh.rows)
    return running


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def stop_token_ids(lm: LoadedModel) -> frozenset[int]:
    """The tokenizer's EOS plus `generation_config.eos_token_id` (an int, list, tuple or tensor)."""
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    if isinstance(configured, torch.Tensor):
        configured = configured.reshape(-1).tolist()
    elif configured is None or isinstance(configured, int):
        configured = [configured]
    ids = {lm.tokenizer.eos_token_id, *configured}
    return frozenset(int(i) for i in ids if i is not None)


def auto_batch_size(lm: LoadedModel, max_tokens: int = 1024) -> int:
    """Rows in flight: 32 on the CPU; on CUDA, what half the free memory holds in KV cache."""
    if lm.device.type != "cuda":
        return 32
    config = lm.model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    bytes_per_row = (
        2 * lm.n_layers * heads * head_dim * max_tokens * torch.finfo(lm.dtype).bits // 8
    )
    free, _ = torch.cuda.mem_get_info(lm.device)
    return int(max(1, min(512, free // 2 // max(bytes_per_row, 1))))


def generate(
    lm: LoadedModel,
    requests: Sequence[GenerationRequest],
    *,
    batch_size: int | None = None,
    on_complete: Callable[[Completion], None] | None = None,
) -> list[Completion]:
    """Decode `requests` in batches (see `Decoder`)."""
    return Decoder(lm, batch_size).generate(requests, on_complete)
