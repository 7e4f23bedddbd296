"""Residual-stream injection and recording at `blocks.{L}.hook_resid_post`.

The residual stream after decoder block L is the block's output. Injection adds
`strength * vector` to it, per row, inside a per-row window of absolute token positions; the
window is "from token t through every generated token" (end=None) or "[a, b)". Position 0 is
never touched (attention-sink norms are ~100x the median there).

Positions are the absolute index of each token in its row's unpadded sequence. The caller sets
them for every forward (`RowInjections.positions`, [B, T], -1 on padding); without that, the
hook reads the `position_ids` the layer receives. Never by counting hook calls: two public
replications silently stopped injecting during cached decoding that way.

Hooks are only added by the context managers `inject` and `record`, which remove exactly the
handles they created in `finally`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from introspection_bench.errors import InjectionError, LayerOutOfRangeError

if TYPE_CHECKING:
    from introspection_bench.models import LoadedModel

#: A window end that means "through every generated token".
OPEN_END = 2**62

#: Attribute that marks the hook functions this module adds (counted by `hook_count`).
_OURS = "_introspection_bench_hook"


def site_name(layer: int) -> str:
    """The one name format for a hook site: `blocks.{L}.hook_resid_post`."""
    return f"blocks.{layer}.hook_resid_post"


@dataclass(frozen=True)
class InjectionSpec:
    """One row's injection."""

    layer: int
    """Decoder block whose output (the residual stream after it) receives the vector."""
    vector: torch.Tensor
    """[D] concept (or random) direction, unscaled."""
    strength: float
    """Multiplier of `vector`; 0 is the identity."""
    start: int
    """First absolute token position of the window (position 0 is skipped regardless)."""
    end: int | None = None
    """One past the last position, or None for "through every generated token"."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.strength):
            raise InjectionError(
                f"strength {self.strength} is not finite; give a finite number like 4"
            )
        if self.vector.ndim != 1:
            raise InjectionError(f"vector must be 1-D [D], got shape {tuple(self.vector.shape)}")
        if not bool(torch.isfinite(self.vector).all()):
            raise InjectionError("vector has non-finite entries; rebuild the concept vector")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise InjectionError(
                f"window [{self.start}, {self.end}) is empty or negative; give 0 <= start < end"
            )

    def check_fits(self, prompt_length: int) -> None:
        """Raise when the window does not start inside a prompt of `prompt_length` tokens.

        Raises:
            InjectionError: Naming the window and the prompt length.

        """
        end_ok = self.end is None or self.end <= prompt_length
        if self.start >= prompt_length or not end_ok:
            raise InjectionError(
                f"window [{self.start}, {self.end}) falls outside the "
                f"{prompt_length}-token prompt; "
                "windows start inside the prompt and a closed window ends inside it"
            )


class RowInjections:
    """Per-row injection state of one batch; the decoding loop keeps it in step with its rows.

    Attributes:
        deltas: layer -> [B, D] tensor of `strength * vector` (zero rows: no injection there).
        starts: [B] window starts. ends: [B] window ends (OPEN_END for open windows).
        positions: [B, T] absolute positions of the tokens of the current forward, or None.

    """

    def __init__(
        self, specs: Sequence[InjectionSpec | None], d_model: int, device: Any, dtype: torch.dtype
    ):
        self.d_model, self.device, self.dtype = d_model, device, dtype
        batch = len(specs)
        self.starts = torch.zeros(batch, dtype=torch.long, device=device)
        self.ends = torch.zeros(batch, dtype=torch.long, device=device)
        self.deltas: dict[int, torch.Tensor] = {}
        self.positions: torch.Tensor | None = None
        for row, spec in enumerate(specs):
            if spec is None:
                continue
            if spec.vector.shape[0] != d_model:
                raise InjectionError(
                    f"vector has width {spec.vector.shape[0]}, the model has {d_model}"
                )
            if spec.layer not in self.deltas:
                self.deltas[spec.layer] = torch.zeros(batch, d_model, dtype=dtype, device=device)
            # Scale in fp32, then cast once: the delta added is exactly this tensor.
            scaled = spec.strength * spec.vector.to(device=device, dtype=torch.float32)
            self.deltas[spec.layer][row] = scaled.to(dtype)
            self.starts[row] = max(1, spec.start)
            self.ends[row] = OPEN_END if spec.end is None else spec.end

    @property
    def batch_size(self) -> int:
        """Number of rows."""
        return int(self.starts.shape[0])

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (a [B'] index tensor), in that order."""
        self.starts, self.ends = self.starts[rows], self.ends[rows]
        self.deltas = {layer: delta[rows] for layer, delta in self.deltas.items()}

    def extend(self, other: RowInjections) -> None:
        """Append `other`'s rows after this batch's rows."""
        for layer in set(self.deltas) | set(other.deltas):
            mine = self.deltas.get(
                layer,
                torch.zeros(self.batch_size, self.d_model, dtype=self.dtype, device=self.device),
            )
            theirs = other.deltas.get(
                layer,
                torch.zeros(other.batch_size, self.d_model, dtype=self.dtype, device=self.device),
            )
            self.deltas[layer] = torch.cat([mine, theirs])
        self.starts = torch.cat([self.starts, other.starts])
        self.ends = torch.cat([self.ends, other.ends])

    def window_mask(self, positions: torch.Tensor) -> torch.Tensor:
        """[B, T] bool: which tokens of the current forward lie in their row's window."""
        return (
            (positions >= self.starts[:, None]) & (positions < self.ends[:, None]) & (positions > 0)
        )

    def add_to(self, activation: torch.Tensor, layer: int, positions: torch.Tensor) -> torch.Tensor:
        """Return `activation` ([B, T, D]) plus each row's delta inside its window."""
        delta = self.deltas[layer]
        if activation.shape[0] != delta.shape[0]:
            raise InjectionError(
                f"batch of {activation.shape[0]} rows reached layer {layer} "
                f"but {delta.shape[0]} rows "
                "have injections; keep RowInjections in step with the batch (select/extend)"
            )
        if delta.device != activation.device:  # a block dispatched to another device
            delta = delta.to(activation.device)
            positions = positions.to(self.starts.device)
        mask = self.window_mask(positions).to(activation.device, activation.dtype)
        return activation + mask[:, :, None] * delta[:, None, :]


def _output_tensor(output: Any) -> torch.Tensor:
    # transformers 5 decoder layers return a bare tensor; older ones and GPT-2 return tuples.
    return output if isinstance(output, torch.Tensor) else output[0]


def _replace_output(output: Any, tensor: torch.Tensor) -> Any:
    return tensor if isinstance(output, torch.Tensor) else (tensor, *output[1:])


def _check_layer(lm: LoadedModel, layer: int) -> None:
    if not 0 <= layer < lm.n_layers:
        raise LayerOutOfRangeError(
            f"layer {layer} is out of range for {lm.spec} with {lm.n_layers} decoder layers; "
            f"use an index in [0, {lm.n_layers - 1}]"
        )


@contextmanager
def inject(lm: LoadedModel, rows: RowInjections) -> Iterator[RowInjections]:
    """Add each row's delta to the residual stream after its layer while the context is open.

    Args:
        lm: The model.
        rows: Per-row injections; set `rows.positions` before each forward, or let the layer's
            `position_ids` keyword be used.

    Yields:
        `rows`, for the caller to update positions and rows.

    Raises:
        LayerOutOfRangeError: For a layer outside the model.
        InjectionError: When a forward gives the hook no way to know token positions.

    """
    for layer in rows.deltas:
        _check_layer(lm, layer)
    handles = []
    try:
        for layer in rows.deltas:
            handles.append(
                lm.layers[layer].register_forward_hook(
                    _injection_hook(rows, layer), with_kwargs=True
                )
            )
        yield rows
    finally:
        for handle in handles:
            handle.remove()


def _injection_hook(rows: RowInjections, layer: int) -> Any:
    def hook(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        activation = _output_tensor(output)
        positions = rows.positions
        if positions is None:
            positions = kwargs.get("position_ids")
            if positions is None:
                raise InjectionError(
                    f"no token positions at {site_name(layer)}: set RowInjections.positions "
                    "before the forward (the decoding loop does) or pass position_ids"
                )
            positions = positions.expand(activation.shape[0], -1)
        if positions.shape != activation.shape[:2]:
            raise InjectionError(
                f"positions of shape {tuple(positions.shape)} do not match activations "
                f"{tuple(activation.shape[:2])} at {site_name(layer)}"
            )
        return _replace_output(output, rows.add_to(activation, layer, positions))

    setattr(hook, _OURS, True)
    return hook


@contextmanager
def record(lm: LoadedModel, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the residual stream after each of `layers` during the forwards in the context.

    Yields:
        A dict filled as forwards run: layer -> [B, T, D] output of the last forward
        (after any injection at that layer, since hooks run in registration order).

    """
    for layer in layers:
        _check_layer(lm, layer)
    recorded: dict[int, torch.Tensor] = {}
    handles = []
    home = lm.device  # blocks dispatched over devices (device_map) record to one device

    def make_hook(layer: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            recorded[layer] = _output_tensor(output).detach().to(home)

        setattr(hook, _OURS, True)
        return hook

    try:
        for layer in layers:
            handles.append(lm.layers[layer].register_forward_hook(make_hook(layer)))
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def hook_count(lm: LoadedModel) -> int:
    """Number of this package's forward hooks on the decoder blocks (0 outside our contexts).

    Hooks added by others are not counted: transformers installs permanent output-capturing
    hooks on the decoder blocks the first time a forward asks for `output_hidden_states`.
    """
    hooks = [hook for layer in lm.layers for hook in layer._forward_hooks.values()]
    return sum(1 for hook in hooks if getattr(hook, _OURS, False))


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] absolute positions from a (left- or middle-padded) mask; -1 on padding."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, -1)
