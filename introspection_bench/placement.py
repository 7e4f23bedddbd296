"""Where a job's model runs: one GPU per pytest-xdist worker, or one model over several devices.

- `-n N --device cuda`: xdist worker `gwI` loads its model on `cuda:I`; more workers than
  visible GPUs is a usage error (it would put two models on one GPU and run out of memory).
- `--device-map auto|balanced|sequential|<file.json>`: accelerate places the decoder blocks
  over the GPUs, then the CPU, then disk (`offload_folder`) for a model larger than one device.
  Hooks follow the activations: a delta is moved to the device of the layer it is added at.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from introspection_bench.errors import ConfigError

#: accelerate's named strategies for `device_map`.
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def worker_index(worker: str | None) -> int | None:
    """The number of an xdist worker id (`gw3` -> 3); None outside xdist or on the controller."""
    if worker in (None, "", "master"):
        return None
    match = re.fullmatch(r"gw(\d+)", str(worker))
    if not match:
        raise ConfigError(f"unexpected pytest-xdist worker id {worker!r}; expected gw<N>")
    return int(match[1])


def worker_device(device: str, worker: str | None, n_workers: int | None, n_gpus: int) -> str:
    """The device an xdist worker loads its model on: `cuda` becomes `cuda:<worker number>`.

    Args:
        device: The `--device` option (`auto`, `cpu`, `cuda`, `cuda:N`).
        worker: `PYTEST_XDIST_WORKER` (None outside xdist).
        n_workers: `PYTEST_XDIST_WORKER_COUNT` (None outside xdist).
        n_gpus: Visible CUDA devices (`torch.cuda.device_count()`).

    Returns:
        `cuda:I` for worker I when the run is on CUDA, else `device` unchanged.

    Raises:
        ConfigError: When the workers outnumber the GPUs, naming both counts and the fix.

    """
    index = worker_index(worker)
    on_cuda = device == "cuda" or (device == "auto" and n_gpus > 0)
    if index is None or not on_cuda:
        return device
    count = n_workers if n_workers is not None else index + 1
    if count > n_gpus:
        raise ConfigError(
            f"{count} pytest-xdist workers but {n_gpus} visible CUDA device(s): one model per GPU "
            f"needs -n {n_gpus} or fewer (or --device cuda:N to share one GPU deliberately)"
        )
    return f"cuda:{index}"


def parse_device_map(value: str | None) -> str | dict[str, Any] | None:
    """`--device-map`: a strategy name or a JSON file of module name -> device.

    Raises:
        ConfigError: For an unknown strategy or an unreadable / non-object JSON file.

    """
    if value is None or value == "":
        return None
    if value in DEVICE_MAP_STRATEGIES:
        return value
    path = Path(value)
    if not path.suffix == ".json":
        raise ConfigError(
            f"--device-map {value!r}: use one of {', '.join(DEVICE_MAP_STRATEGIES)} "
            "or a .json file mapping module names to devices"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"--device-map {value}: cannot read it ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"--device-map {value}: expected a JSON object of module -> device")
    return data


def input_device(model: Any) -> Any:
    """Where a model's inputs go: the embedding's execution device under accelerate dispatch.

    An offloaded embedding's weight sits on the `meta` device; accelerate's hook on it names
    the device it computes on.
    """
    embeddings = model.get_input_embeddings()
    hook = getattr(embeddings, "_hf_hook", None)
    execution = getattr(hook, "execution_device", None)
    if execution is not None:
        import torch

        return torch.device(execution if not isinstance(execution, int) else f"cuda:{execution}")
    return embeddings.weight.device


def dispatched_options(device_map: str | dict[str, Any], adapter: Path | None) -> dict[str, Any]:
    """`from_pretrained` keywords that dispatch a model over devices (disk offload included).

    Raises:
        ConfigError: With a LoRA adapter (merging needs every weight in memory at once).

    """
    import atexit
    import shutil
    import tempfile

    if adapter is not None:
        raise ConfigError(
            "--device-map cannot be combined with a +lora: adapter (merging needs all weights "
            "in memory); merge the adapter first (peft merge_and_unload, save_pretrained)"
        )
    # Weights accelerate puts on disk: this process's own copy, removed when it exits.
    folder = tempfile.mkdtemp(prefix="introspection-bench-offload-")
    atexit.register(shutil.rmtree, folder, True)
    return {"device_map": device_map, "offload_folder": folder}


def parameter_value(model: Any, name: str, parameter: Any) -> Any:
    """A parameter's values, read from accelerate's offload store when it sits on `meta`.

    Raises:
        ConfigError: For a `meta` parameter that no offload hook holds (a model not loaded).

    """
    if parameter.device.type != "meta":
        return parameter
    module_name, _, local = name.rpartition(".")
    hook = getattr(model.get_submodule(module_name), "_hf_hook", None)
    weights = getattr(hook, "weights_map", None)
    if weights is None:
        raise ConfigError(f"parameter {name} is on the meta device and no offload hook holds it")
    return weights[local]
