"""Tests of introspection_bench.hooks on tiny models of every supported architecture.

Exactness contract (DESIGN.md, "The hook"): outside the window the hooked residual stream equals
the unhooked one bit for bit; inside it equals unhooked + strength * vector, computed as the hook
computes it (unhooked + mask * delta in the model's dtype); hooks are gone after every exit.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from introspection_bench.errors import InjectionError, LayerOutOfRangeError
from introspection_bench.hooks import (
    OPEN_END,
    InjectionSpec,
    RowInjections,
    hook_count,
    inject,
    positions_from_mask,
    record,
    site_name,
)
from introspection_bench.models import LoadedModel

PROPERTY = settings(max_examples=25, deadline=None)


def _vector(lm: LoadedModel, seed: int) -> torch.Tensor:
    return torch.randn(lm.d_model, generator=torch.Generator().manual_seed(seed))


def _ids(lengths: list[int], pad: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random token ids and their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, width - length :] = torch.randint(100, 40000, (length,), generator=generator)
        mask[row, width - length :] = 1
    return ids, mask


def _run(
    lm: LoadedModel,
    ids: torch.Tensor,
    mask: torch.Tensor,
    layers: list[int],
    rows: RowInjections | None = None,
    *,
    set_positions: bool = True,
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """One forward; returns the residual stream after each of `layers` and the logits."""
    positions = positions_from_mask(mask)
    kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions.clamp(min=0)}
    with torch.inference_mode():
        if rows is None:
            with record(lm, layers) as recorded:
                logits = lm.model(**kwargs).logits
        else:
            rows.positions = positions if set_positions else None
            with inject(lm, rows), record(lm, layers) as recorded:
                logits = lm.model(**kwargs).logits
            rows.positions = None
    return dict(recorded), logits


def _expected_mask(
    positions: torch.Tensor, windows: list[tuple[int, int | None] | None]
) -> torch.Tensor:
    """[B, T] bool: the window of each row in absolute positions, never position 0 or padding."""
    expected = torch.zeros_like(positions, dtype=torch.bool)
    for row, window in enumerate(windows):
        if window is None:
            continue
        start, end = window
        stop = OPEN_END if end is None else end
        expected[row] = (positions[row] >= max(1, start)) & (positions[row] < stop)
    return expected


def _exact(unhooked: torch.Tensor, mask: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """unhooked + mask * delta, the hook's arithmetic in the activation's dtype."""
    return unhooked + mask.to(unhooked.dtype)[:, :, None] * delta.to(unhooked.dtype)[:, None, :]


def _delta(spec: InjectionSpec, dtype: torch.dtype) -> torch.Tensor:
    return (spec.strength * spec.vector.to(torch.float32)).to(dtype)


# --- exactness ------------------------------------------------------------------------------


def test_outside_window_equals_unhooked(tiny: LoadedModel) -> None:
    layer = tiny.n_layers // 2
    ids, mask = _ids([12], tiny.tokenizer.pad_token_id)
    spec = InjectionSpec(layer, _vector(tiny, 1), 4.0, start=4, end=9)
    unhooked, _ = _run(tiny, ids, mask, [layer])
    hooked, _ = _run(
        tiny, ids, mask, [layer], RowInjections([spec], tiny.d_model, "cpu", tiny.dtype)
    )
    outside = torch.ones(12, dtype=torch.bool)
    outside[4:9] = False
    assert torch.equal(hooked[layer][0, outside], unhooked[layer][0, outside])
    assert not torch.equal(hooked[layer][0, 4:9], unhooked[layer][0, 4:9])


def test_inside_window_adds_exact_delta(tiny: LoadedModel) -> None:
    layer = tiny.n_layers - 1
    ids, mask = _ids([10], tiny.tokenizer.pad_token_id)
    spec = InjectionSpec(layer, _vector(tiny, 2), 3.5, start=3, end=None)
    unhooked, _ = _run(tiny, ids, mask, [layer])
    hooked, _ = _run(
        tiny, ids, mask, [layer], RowInjections([spec], tiny.d_model, "cpu", tiny.dtype)
    )
    window = _expected_mask(positions_from_mask(mask), [(3, None)])
    expected = _exact(unhooked[layer], window, _delta(spec, tiny.dtype)[None])
    assert torch.equal(hooked[layer], expected)
    assert torch.equal(
        hooked[layer][0, 3:] - unhooked[layer][0, 3:], expected[0, 3:] - unhooked[layer][0, 3:]
    )


def test_injection_changes_downstream_logits(tiny: LoadedModel) -> None:
    layer = 0
    ids, mask = _ids([8], tiny.tokenizer.pad_token_id)
    spec = InjectionSpec(layer, _vector(tiny, 3), 8.0, start=5, end=None)
    _, unhooked = _run(tiny, ids, mask, [layer])
    _, hooked = _run(
        tiny, ids, mask, [layer], RowInjections([spec], tiny.d_model, "cpu", tiny.dtype)
    )
    assert torch.equal(hooked[0, :5], unhooked[0, :5])  # causal: earlier tokens cannot see it
    assert not torch.allclose(hooked[0, 5:], unhooked[0, 5:])


def test_strength_zero_is_identity(tiny: LoadedModel) -> None:
    ids, mask = _ids([9, 6], tiny.tokenizer.pad_token_id)
    specs = [
        InjectionSpec(0, _vector(tiny, 4), 0.0, start=1),
        InjectionSpec(tiny.n_layers - 1, _vector(tiny, 5), 0.0, start=2),
    ]
    _, unhooked = _run(tiny, ids, mask, [0])
    _, hooked = _run(tiny, ids, mask, [0], RowInjections(specs, tiny.d_model, "cpu", tiny.dtype))
    assert torch.equal(hooked, unhooked)


def test_position_zero_never_changes(tiny: LoadedModel) -> None:
    layer = 0
    ids, mask = _ids([7, 4], tiny.tokenizer.pad_token_id)
    specs = [
        InjectionSpec(layer, _vector(tiny, 6), 10.0, start=0),
        InjectionSpec(layer, _vector(tiny, 7), 10.0, start=0, end=3),
    ]
    unhooked, _ = _run(tiny, ids, mask, [layer])
    hooked, _ = _run(
        tiny, ids, mask, [layer], RowInjections(specs, tiny.d_model, "cpu", tiny.dtype)
    )
    first_real = (mask == 1).long().argmax(dim=1)
    for row in range(2):
        slot = int(first_real[row])
        assert torch.equal(hooked[layer][row, slot], unhooked[layer][row, slot])
        assert not torch.equal(hooked[layer][row, slot + 1], unhooked[layer][row, slot + 1])


def test_left_padded_rows_use_their_own_positions(tiny: LoadedModel) -> None:
    layer = 1
    lengths = [9, 6, 4, 7]
    windows: list[tuple[int, int | None] | None] = [(2, 5), (1, None), (3, 4), None]
    ids, mask = _ids(lengths, tiny.tokenizer.pad_token_id)
    specs = [
        None if w is None else InjectionSpec(layer, _vector(tiny, 10 + i), 2.0, *w)
        for i, w in enumerate(windows)
    ]
    unhooked, _ = _run(tiny, ids, mask, [layer])
    hooked, _ = _run(
        tiny, ids, mask, [layer], RowInjections(specs, tiny.d_model, "cpu", tiny.dtype)
    )
    changed = (hooked[layer] != unhooked[layer]).any(dim=-1)
    expected = torch.zeros_like(changed)
    pads = [9 - n for n in lengths]
    expected[0, pads[0] + 2 : pads[0] + 5] = True  # positions 2, 3, 4
    expected[1, pads[1] + 1 :] = True  # positions 1..5
    expected[2, pads[2] + 3] = True  # position 3
    assert torch.equal(changed, expected)
    deltas = torch.stack(
        [torch.zeros(tiny.d_model) if s is None else _delta(s, tiny.dtype) for s in specs]
    )
    assert torch.equal(hooked[layer], _exact(unhooked[layer], expected, deltas))


def test_positions_fall_back_to_position_ids(tiny: LoadedModel) -> None:
    layer = 0
    ids, mask = _ids([8, 5], tiny.tokenizer.pad_token_id)
    specs = [
        InjectionSpec(layer, _vector(tiny, 20), 2.0, 2, 6),
        InjectionSpec(layer, _vector(tiny, 21), 2.0, 2, 6),
    ]
    with_positions, _ = _run(
        tiny, ids, mask, [layer], RowInjections(specs, tiny.d_model, "cpu", tiny.dtype)
    )
    from_kwargs, _ = _run(
        tiny,
        ids,
        mask,
        [layer],
        RowInjections(specs, tiny.d_model, "cpu", tiny.dtype),
        set_positions=False,
    )
    assert torch.equal(from_kwargs[layer], with_positions[layer])


def test_rows_inject_at_different_layers(tiny: LoadedModel) -> None:
    first, last = 0, tiny.n_layers - 1
    ids, mask = _ids([8, 8], tiny.tokenizer.pad_token_id)
    specs = [
        InjectionSpec(first, _vector(tiny, 30), 3.0, 2),
        InjectionSpec(last, _vector(tiny, 31), 3.0, 4),
    ]
    only_first, _ = _run(
        tiny,
        ids,
        mask,
        [first, last],
        RowInjections([specs[0], None], tiny.d_model, "cpu", tiny.dtype),
    )
    unhooked, _ = _run(tiny, ids, mask, [first, last])
    hooked, _ = _run(
        tiny, ids, mask, [first, last], RowInjections(specs, tiny.d_model, "cpu", tiny.dtype)
    )
    positions = positions_from_mask(mask)
    # Layer `first`: only row 0 changes, by its delta inside its window.
    at_first = _expected_mask(positions, [(2, None), None])
    deltas_first = torch.stack([_delta(specs[0], tiny.dtype), torch.zeros(tiny.d_model)])
    assert torch.equal(hooked[first], _exact(unhooked[first], at_first, deltas_first))
    # Layer `last`: row 1 gets its delta on top of the run that only injected row 0.
    at_last = _expected_mask(positions, [None, (4, None)])
    deltas_last = torch.stack([torch.zeros(tiny.d_model), _delta(specs[1], tiny.dtype)])
    assert torch.equal(hooked[last], _exact(only_first[last], at_last, deltas_last))


def test_stacked_inject_contexts_both_apply(tiny: LoadedModel) -> None:
    first, last = 0, tiny.n_layers - 1
    ids, mask = _ids([8], tiny.tokenizer.pad_token_id)
    early = InjectionSpec(first, _vector(tiny, 40), 2.0, 3)
    late = InjectionSpec(last, _vector(tiny, 41), 2.0, 5)
    early_only, _ = _run(
        tiny, ids, mask, [last], RowInjections([early], tiny.d_model, "cpu", tiny.dtype)
    )
    positions = positions_from_mask(mask)
    rows_early = RowInjections([early], tiny.d_model, "cpu", tiny.dtype)
    rows_late = RowInjections([late], tiny.d_model, "cpu", tiny.dtype)
    rows_early.positions = rows_late.positions = positions
    with (
        torch.inference_mode(),
        inject(tiny, rows_early),
        inject(tiny, rows_late),
        record(tiny, [last]) as recorded,
    ):
        assert hook_count(tiny) == 3
        tiny.model(input_ids=ids, attention_mask=mask)
    window = _expected_mask(positions, [(5, None)])
    assert torch.equal(
        recorded[last], _exact(early_only[last], window, _delta(late, tiny.dtype)[None])
    )


def test_control_rows_and_other_rows_unaffected(tiny: LoadedModel) -> None:
    """A control row in a batch with an injected row equals the same row run with no injection."""
    layer = tiny.n_layers - 1
    ids, mask = _ids([8, 8], tiny.tokenizer.pad_token_id)
    spec = InjectionSpec(0, _vector(tiny, 50), 6.0, 1)
    unhooked, logits_plain = _run(tiny, ids, mask, [layer])
    hooked, logits_hooked = _run(
        tiny, ids, mask, [layer], RowInjections([spec, None], tiny.d_model, "cpu", tiny.dtype)
    )
    assert torch.equal(hooked[layer][1], unhooked[layer][1])
    assert torch.equal(logits_hooked[1], logits_plain[1])


# --- hook lifetime --------------------------------------------------------------------------


def _rows(lm: LoadedModel, layers: list[int]) -> RowInjections:
    return RowInjections(
        [InjectionSpec(layer, _vector(lm, layer), 1.0, 1) for layer in layers],
        lm.d_model,
        "cpu",
        lm.dtype,
    )


def test_hooks_removed_after_normal_exit(tiny: LoadedModel) -> None:
    layers = list(range(tiny.n_layers))
    with inject(tiny, _rows(tiny, layers)):
        assert hook_count(tiny) == tiny.n_layers
    assert hook_count(tiny) == 0
    with record(tiny, layers):
        assert hook_count(tiny) == tiny.n_layers
    assert hook_count(tiny) == 0


def test_hooks_removed_after_exception(tiny: LoadedModel) -> None:
    ids, mask = _ids([6], tiny.tokenizer.pad_token_id)
    with (
        pytest.raises(RuntimeError, match="boom"),
        inject(tiny, _rows(tiny, [0])),
        record(tiny, [0, 1]),
    ):
        assert hook_count(tiny) == 3
        raise RuntimeError("boom")
    assert hook_count(tiny) == 0
    # An error raised by the hook itself, mid-forward (wrong batch size for the injections).
    rows = _rows(tiny, [0, 0])
    with pytest.raises(InjectionError, match="keep RowInjections in step"), inject(tiny, rows):
        rows.positions = positions_from_mask(mask)
        tiny.model(input_ids=ids, attention_mask=mask)
    assert hook_count(tiny) == 0


def test_nested_contexts_remove_only_their_own(tiny: LoadedModel) -> None:
    before = {i: list(layer._forward_hooks) for i, layer in enumerate(tiny.layers)}
    foreign = tiny.layers[0].register_forward_hook(lambda *args: None)
    try:
        with inject(tiny, _rows(tiny, [0])):
            with record(tiny, [0, 1]):
                assert hook_count(tiny) == 3
                assert len(tiny.layers[0]._forward_hooks) == len(before[0]) + 3
            assert hook_count(tiny) == 1
            assert list(tiny.layers[1]._forward_hooks) == before[1]
        assert hook_count(tiny) == 0
        assert list(tiny.layers[0]._forward_hooks) == [*before[0], foreign.id]
    finally:
        foreign.remove()


def test_hook_count_ignores_transformers_capture_hooks(tiny_builder: Any) -> None:
    lm = tiny_builder("llama", seed=7)
    with torch.inference_mode():
        lm.model(input_ids=torch.tensor([[5, 6, 7]]), output_hidden_states=True)
    assert sum(len(layer._forward_hooks) for layer in lm.layers) > 0  # transformers keeps these
    assert hook_count(lm) == 0
    with record(lm, [0]):
        assert hook_count(lm) == 1


# --- recording ------------------------------------------------------------------------------


def test_record_many_layers_in_one_forward(tiny: LoadedModel) -> None:
    ids, mask = _ids([7, 5], tiny.tokenizer.pad_token_id)
    layers = list(range(tiny.n_layers))
    calls = []
    counter = tiny.layers[0].register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.inference_mode(), record(tiny, layers) as recorded:
            out = tiny.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    finally:
        counter.remove()
    assert len(calls) == 1
    assert sorted(recorded) == layers
    for layer in layers:
        assert recorded[layer].shape == (2, 7, tiny.d_model)
    for layer in layers[:-1]:  # the last hidden state has the final norm applied
        assert torch.equal(recorded[layer], out.hidden_states[layer + 1])


def test_record_sees_the_injection_at_its_layer(tiny: LoadedModel) -> None:
    ids, mask = _ids([6], tiny.tokenizer.pad_token_id)
    spec = InjectionSpec(0, _vector(tiny, 60), 5.0, 2)
    unhooked, _ = _run(tiny, ids, mask, [0])
    hooked, _ = _run(tiny, ids, mask, [0], RowInjections([spec], tiny.d_model, "cpu", tiny.dtype))
    window = _expected_mask(positions_from_mask(mask), [(2, None)])
    assert torch.equal(hooked[0], _exact(unhooked[0], window, _delta(spec, tiny.dtype)[None]))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_strength_errors(strength: float) -> None:
    with pytest.raises(InjectionError, match=rf"strength {strength} is not finite"):
        InjectionSpec(0, torch.ones(4), strength, 1)


def test_non_finite_vector_errors() -> None:
    vector = torch.ones(4)
    vector[2] = float("nan")
    with pytest.raises(InjectionError, match="non-finite entries"):
        InjectionSpec(0, vector, 1.0, 1)


def test_vector_must_be_one_dimensional() -> None:
    with pytest.raises(InjectionError, match=r"1-D \[D\], got shape \(2, 4\)"):
        InjectionSpec(0, torch.ones(2, 4), 1.0, 1)


def test_wrong_vector_width_errors(tiny_models: dict[str, LoadedModel]) -> None:
    lm = tiny_models["llama"]
    spec = InjectionSpec(0, torch.ones(lm.d_model + 1), 1.0, 1)
    with pytest.raises(
        InjectionError, match=rf"width {lm.d_model + 1}, the model has {lm.d_model}"
    ):
        RowInjections([None, spec], lm.d_model, "cpu", lm.dtype)


@pytest.mark.parametrize(("start", "end"), [(3, 3), (5, 2), (-1, None), (-2, 4)])
def test_empty_or_negative_window_errors(start: int, end: int | None) -> None:
    with pytest.raises(InjectionError, match=rf"window \[{start}, {end}\) is empty or negative"):
        InjectionSpec(0, torch.ones(4), 1.0, start, end)


@pytest.mark.parametrize(("start", "end"), [(10, None), (12, None), (3, 11), (10, 20)])
def test_window_outside_prompt_errors(start: int, end: int | None) -> None:
    spec = InjectionSpec(0, torch.ones(4), 1.0, start, end)
    with pytest.raises(
        InjectionError, match=rf"window \[{start}, {end}\) falls outside the 10-token prompt"
    ):
        spec.check_fits(10)


@pytest.mark.parametrize(("start", "end"), [(9, None), (0, 10), (1, None)])
def test_window_inside_prompt_fits(start: int, end: int | None) -> None:
    InjectionSpec(0, torch.ones(4), 1.0, start, end).check_fits(10)


@pytest.mark.parametrize("layer", [-1, 3, 99])
def test_layer_out_of_range_errors(tiny_models: dict[str, LoadedModel], layer: int) -> None:
    lm = tiny_models["llama"]
    rows = RowInjections(
        [InjectionSpec(layer, torch.ones(lm.d_model), 1.0, 1)], lm.d_model, "cpu", lm.dtype
    )
    message = (
        rf"layer {layer} is out of range for tiny:llama with 3 decoder layers; "
        r"use an index in \[0, 2\]"
    )
    with pytest.raises(LayerOutOfRangeError, match=message), inject(lm, rows):
        pass
    with pytest.raises(LayerOutOfRangeError, match=message), record(lm, [0, layer]):
        pass
    assert hook_count(lm) == 0


def test_missing_positions_error_names_site() -> None:
    block = torch.nn.Identity()
    lm = SimpleNamespace(layers=[block], n_layers=1, spec="fake")
    rows = RowInjections([InjectionSpec(0, torch.ones(4), 1.0, 1)], 4, "cpu", torch.float32)
    with (
        pytest.raises(InjectionError, match=r"no token positions at blocks\.0\.hook_resid_post"),
        inject(lm, rows),
    ):  # type: ignore[arg-type]
        block(torch.zeros(1, 3, 4))
    assert len(block._forward_hooks) == 0


def test_positions_shape_mismatch_errors(tiny_models: dict[str, LoadedModel]) -> None:
    lm = tiny_models["llama"]
    ids, mask = _ids([6], lm.tokenizer.pad_token_id)
    rows = RowInjections(
        [InjectionSpec(0, torch.ones(lm.d_model), 1.0, 1)], lm.d_model, "cpu", lm.dtype
    )
    rows.positions = torch.arange(5)[None]
    with pytest.raises(
        InjectionError, match=r"positions of shape \(1, 5\) do not match activations \(1, 6\)"
    ):
        with torch.inference_mode(), inject(lm, rows):
            lm.model(input_ids=ids, attention_mask=mask)


def test_site_name_format() -> None:
    assert site_name(7) == "blocks.7.hook_resid_post"


# --- properties -----------------------------------------------------------------------------


@PROPERTY
@given(
    length=st.integers(min_value=2, max_value=12),
    data=st.data(),
    strength=st.floats(min_value=-20, max_value=20, allow_nan=False, allow_infinity=False),
)
def test_window_property_changes_exactly_the_window(
    tiny_models: dict[str, LoadedModel], length: int, data: st.DataObject, strength: float
) -> None:
    lm = tiny_models["llama"]
    layer = data.draw(st.integers(min_value=0, max_value=lm.n_layers - 1), label="layer")
    start = data.draw(st.integers(min_value=0, max_value=length - 1), label="start")
    end = data.draw(st.none() | st.integers(min_value=start + 1, max_value=length), label="end")
    padding = data.draw(st.integers(min_value=0, max_value=3), label="padding")
    ids, mask = _ids([length, length + padding], lm.tokenizer.pad_token_id, seed=length)
    spec = InjectionSpec(layer, _vector(lm, length), strength, start, end)
    spec.check_fits(length)
    unhooked, _ = _run(lm, ids, mask, [layer])
    hooked, _ = _run(
        lm, ids, mask, [layer], RowInjections([spec, None], lm.d_model, "cpu", lm.dtype)
    )
    window = _expected_mask(positions_from_mask(mask), [(start, end), None])
    deltas = torch.stack([_delta(spec, lm.dtype), torch.zeros(lm.d_model)])
    assert torch.equal(hooked[layer], _exact(unhooked[layer], window, deltas))
    assert torch.equal(hooked[layer][~window], unhooked[layer][~window])


@PROPERTY
@given(lengths=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=5))
def test_positions_from_mask_counts_real_tokens(lengths: list[int]) -> None:
    _, mask = _ids(lengths, pad=0)
    positions = positions_from_mask(mask)
    width = max(lengths)
    for row, length in enumerate(lengths):
        assert positions[row, : width - length].tolist() == [-1] * (width - length)
        assert positions[row, width - length :].tolist() == list(range(length))


@PROPERTY
@given(
    positions=st.lists(st.integers(min_value=-1, max_value=40), min_size=1, max_size=16),
    start=st.integers(min_value=0, max_value=30),
    length=st.none() | st.integers(min_value=1, max_value=10),
)
def test_window_mask_is_the_half_open_window(
    positions: list[int], start: int, length: int | None
) -> None:
    end = None if length is None else start + length
    rows = RowInjections(
        [InjectionSpec(0, torch.ones(2), 1.0, start, end), None], 2, "cpu", torch.float32
    )
    grid = torch.tensor([positions, positions])
    mask = rows.window_mask(grid)
    stop = OPEN_END if end is None else end
    assert mask[0].tolist() == [p >= max(1, start) and p < stop for p in positions]
    assert not mask[1].any()


def test_select_and_extend_keep_rows_in_step() -> None:
    specs = [InjectionSpec(0, torch.full((2,), float(i + 1)), 1.0, i + 1) for i in range(3)]
    rows = RowInjections(specs, 2, "cpu", torch.float32)
    rows.select(torch.tensor([2, 0]))
    assert rows.starts.tolist() == [3, 1]
    assert rows.deltas[0][:, 0].tolist() == [3.0, 1.0]
    other = RowInjections(
        [None, InjectionSpec(1, torch.full((2,), 9.0), 2.0, 4, 6)], 2, "cpu", torch.float32
    )
    rows.extend(other)
    assert rows.batch_size == 4
    assert rows.starts.tolist() == [3, 1, 0, 4]
    assert rows.ends.tolist() == [OPEN_END, OPEN_END, 0, 6]
    assert rows.deltas[0][:, 0].tolist() == [3.0, 1.0, 0.0, 0.0]
    assert rows.deltas[1][:, 0].tolist() == [0.0, 0.0, 0.0, 18.0]


@pytest.fixture(autouse=True)
def _no_hooks_left(tiny_models: dict[str, LoadedModel]) -> Any:
    """Every test leaves zero hooks on every tiny model."""
    yield
    leftovers = {name: hook_count(lm) for name, lm in tiny_models.items() if hook_count(lm)}
    assert not leftovers, f"hooks left behind: {leftovers}"
