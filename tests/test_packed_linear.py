"""oneDNN-packed linear layers: same results as `nn.Linear`, used only where they are safe."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from introspection_bench import packed_linear
from introspection_bench.models import fingerprint, wrap_model

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="torch without oneDNN")


def _linear(n_in: int, n_out: int, bias: bool, dtype: torch.dtype) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(n_in, n_out, bias=bias).to(dtype).requires_grad_(False)


def _packed(layer: torch.nn.Linear) -> torch.nn.Linear:
    model = torch.nn.Sequential(layer)
    assert packed_linear.pack_linears(model) == 1
    return model[0]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "shape", [(5, 48), (3, 7, 48), (1, 48)], ids=["rows", "batch-by-tokens", "one-row"]
)
def test_fp32_packed_output_matches_dense(bias, shape):
    layer = _linear(48, 80, bias, torch.float32)
    x = torch.randn(shape)
    dense = functional.linear(x, layer.weight, layer.bias)
    with torch.inference_mode():
        packed = _packed(layer)(x)
    assert packed.shape == dense.shape
    torch.testing.assert_close(packed, dense, atol=1e-5, rtol=1e-5)


def test_non_contiguous_input_is_read_correctly():
    layer = _linear(48, 80, False, torch.float32)
    x = torch.randn(4, 9, 48)[:, ::2]  # every other position: a strided view
    dense = functional.linear(x, layer.weight)
    with torch.inference_mode():
        packed = _packed(layer)(x)
    torch.testing.assert_close(packed, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(
    not packed_linear.works(torch.bfloat16),
    reason="oneDNN packs bf16 only with AVX-512 or AVX-NE-CONVERT",
)
def test_bf16_is_as_close_to_fp32_as_dense_bf16_is():
    layer = _linear(576, 192, False, torch.float32)
    x = torch.randn(32, 576)
    exact = functional.linear(x, layer.weight)
    half = _linear(576, 192, False, torch.float32).to(torch.bfloat16)
    dense_error = (functional.linear(x.bfloat16(), half.weight).float() - exact).abs().mean()
    with torch.inference_mode():
        packed = _packed(half)(x.bfloat16())
    assert packed.dtype == torch.bfloat16
    assert (packed.float() - exact).abs().mean() <= 1.5 * dense_error


def test_a_model_packed_in_fp32_and_cast_to_bf16_runs_on_any_cpu(monkeypatch):
    # On a CPU without AVX-512 oneDNN refuses to pack bf16: the cast layer must multiply densely
    # instead of failing on its first call.
    packed = _packed(_linear(48, 80, True, torch.float32))
    half = packed.to(torch.bfloat16)
    x = torch.randn(5, 48).bfloat16()
    dense = functional.linear(x, half.weight, half.bias)
    with torch.inference_mode():
        here = half(x)  # this CPU, whichever it is
    torch.testing.assert_close(here.float(), dense.float(), atol=2e-2, rtol=2e-2)
    monkeypatch.setattr(packed_linear, "works", lambda dtype: dtype == torch.float32)
    with torch.inference_mode():
        assert torch.equal(half(x), dense)


def test_a_row_alone_equals_the_same_row_in_a_batch():
    # What "batched equals alone" rests on for the output layer's shape (vocab x d_model).
    layer = _linear(64, 4096, False, torch.float32)
    x = torch.randn(16, 64)
    with torch.inference_mode():
        packed = _packed(layer)
        batched = packed(x)
        for row in range(16):
            assert torch.equal(packed(x[row : row + 1])[0], batched[row])


def test_gradients_take_the_dense_path():
    layer = _linear(12, 6, True, torch.float32)
    packed = _packed(layer)
    x = torch.randn(3, 12, requires_grad=True)
    packed(x).sum().backward()
    expected = layer.weight.sum(0).expand(3, -1)
    torch.testing.assert_close(x.grad, expected)
    packed.weight.requires_grad_(True)
    packed(torch.randn(3, 12)).sum().backward()
    assert packed.weight.grad is not None


def test_an_updated_weight_is_repacked():
    layer = _linear(16, 8, False, torch.float32)
    packed = _packed(layer)
    x = torch.randn(2, 16)
    with torch.inference_mode():
        before = packed(x)
    with torch.no_grad():
        packed.weight.mul_(2.0)  # in place: same storage, new version
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), 2 * before, atol=1e-5, rtol=1e-5)
    packed.weight = torch.nn.Parameter(torch.zeros(8, 16), requires_grad=False)  # a new tensor
    with torch.inference_mode():
        assert torch.equal(packed(x), torch.zeros(2, 8))


def test_other_dtypes_and_devices_fall_back_to_dense():
    layer = _linear(16, 8, False, torch.float32)
    packed = _packed(layer)
    x = torch.randn(2, 16, dtype=torch.float64)
    with torch.inference_mode():
        assert packed(x.float()).dtype == torch.float32
        with pytest.raises(RuntimeError):  # dense linear's own dtype error, not a silent cast
            packed(x)
    half = torch.nn.Sequential(_linear(16, 8, False, torch.float16))
    assert packed_linear.pack_linears(half) == 0  # fp16: left to torch


def test_a_cpu_that_cannot_pack_bf16_keeps_bf16_models_dense(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    model = torch.nn.Sequential(_linear(16, 8, False, torch.bfloat16))
    assert packed_linear.pack_linears(model) == 0
    assert (
        packed_linear.pack_linears(torch.nn.Sequential(_linear(16, 8, False, torch.float32))) == 1
    )


def test_a_packed_op_that_fails_or_disagrees_leaves_layers_dense(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("oneDNN: unsupported")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
    assert (
        packed_linear.pack_linears(torch.nn.Sequential(_linear(16, 8, False, torch.float32))) == 0
    )
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda x, w, *rest: x @ x.T)
    assert (
        packed_linear.pack_linears(torch.nn.Sequential(_linear(16, 8, False, torch.float32))) == 0
    )


def test_switch_memory_and_dispatched_models_leave_layers_dense(monkeypatch):
    model = torch.nn.Sequential(_linear(16, 8, False, torch.float32))
    monkeypatch.setenv(packed_linear.ENVIRONMENT_SWITCH, "0")
    assert packed_linear.pack_linears(model) == 0
    monkeypatch.delenv(packed_linear.ENVIRONMENT_SWITCH)
    monkeypatch.setattr(packed_linear, "_available_memory", lambda: 100)  # 512 bytes of weights
    assert packed_linear.pack_linears(model) == 0
    monkeypatch.undo()
    model.hf_device_map = {"0": "cpu"}
    assert packed_linear.pack_linears(model) == 0
    del model.hf_device_map
    assert packed_linear.pack_linears(model) == 1
    assert packed_linear.packed_count(model) == 1


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gemma3_text", "gpt2"])
def test_wrapped_cpu_models_are_packed_without_changing_identity_or_logits(
    model_type, tiny_builder, smollm2_tokenizer
):
    tiny = tiny_builder(model_type)
    linears = sum(isinstance(m, torch.nn.Linear) for m in tiny.model.modules())
    assert packed_linear.packed_count(tiny.model) == linears > 0
    state = tiny.model.state_dict()
    ids = smollm2_tokenizer(["a prompt", "a longer prompt here"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        packed_logits = tiny.model(**ids).logits
        with packed_linear.dense_linears(tiny.model):
            assert packed_linear.packed_count(tiny.model) == 0
            dense_logits = tiny.model(**ids).logits
    assert packed_linear.packed_count(tiny.model) == linears
    torch.testing.assert_close(packed_logits, dense_logits, atol=1e-4, rtol=1e-4)
    # The packed copies are not weights: the state dict and the fingerprint are unchanged.
    assert tiny.model.state_dict().keys() == state.keys()
    assert fingerprint(tiny) == tiny.fingerprint
    again = wrap_model(tiny.model, smollm2_tokenizer, spec=tiny.spec)
    assert again.fingerprint == tiny.fingerprint


def test_peft_adapters_train_on_a_packed_model(tiny_builder):
    from peft import LoraConfig, get_peft_model

    tiny = tiny_builder("llama")
    model = get_peft_model(tiny.model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    ids = torch.randint(0, 100, (2, 5))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for name, p in model.named_parameters() if "lora_" in name]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
