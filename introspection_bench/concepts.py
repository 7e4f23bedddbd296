"""Concept vectors: batched extraction, a disk cache, norm-matched random vectors, dose statistics.

The paper's method (`last_token`): the residual stream after block L at the last prompt token of
`Tell me about {word}` (chat template, generation prompt appended, word lowercase), minus the
mean of the same activation over the baseline words. The alternative (`word_token`) reads at the
word's own last token, which steers more clearly on small models (NOTES.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from introspection_bench.chat import SpanRef, render_chat
from introspection_bench.errors import ConfigError, StimuliError
from introspection_bench.hooks import positions_from_mask, record
from introspection_bench.models import cache_root

if TYPE_CHECKING:
    from introspection_bench.models import LoadedModel

METHODS = ("last_token", "word_token")
CONCEPT_PROMPT = "Tell me about {word}"


@dataclass(frozen=True)
class ConceptVectors:
    """Concept vectors of many words at one layer."""

    layer: int
    method: str
    words: tuple[str, ...]
    """Lowercase words, in row order of `vectors`."""
    vectors: torch.Tensor
    """[N, D] float32 difference vectors (word activation minus baseline mean)."""
    median_residual_norm: float
    """Median L2 norm of the residual stream at this layer over the extraction prompts'
    tokens, position 0 excluded: the reference for dose ratios."""

    def __getitem__(self, word: str) -> torch.Tensor:
        """The [D] vector of `word` (case-insensitive)."""
        try:
            return self.vectors[self.words.index(word.lower())]
        except ValueError:
            raise ConfigError(
                f"no concept vector for {word!r}; extracted words: {', '.join(self.words[:8])}..."
            ) from None

    def norm_ratio(self, vector: torch.Tensor, strength: float) -> float:
        """Norm of `strength * vector` over the median residual norm at this layer."""
        return float(abs(strength) * vector.float().norm() / self.median_residual_norm)


def word_list_hash(words: Sequence[str]) -> str:
    """Stable hash of a word list (order matters)."""
    return hashlib.sha256(json.dumps(list(words)).encode()).hexdigest()[:16]


def extract_concept_vectors(
    lm: LoadedModel,
    words: Sequence[str],
    baseline_words: Sequence[str],
    layers: Sequence[int],
    *,
    method: str = "last_token",
    batch_size: int = 32,
    cache_dir: Path | None = None,
) -> dict[int, ConceptVectors]:
    """Concept vectors of `words` at every layer in `layers`, reading all layers in one pass.

    Args:
        lm: The model.
        words: Concept words (lowercased here).
        baseline_words: Words whose mean activation is subtracted.
        layers: Block indices.
        method: `last_token` (paper) or `word_token`.
        batch_size: Prompts per forward.
        cache_dir: Where vectors are cached (default: the project cache); None entries recompute.

    Returns:
        layer -> ConceptVectors.

    Raises:
        StimuliError: For an empty word or baseline list.
        ConfigError: For an unknown method.

    """
    if not words or not baseline_words:
        raise StimuliError("concept extraction needs a non-empty word list and baseline list")
    if method not in METHODS:
        raise ConfigError(
            f"unknown concept-vector method {method!r}; use one of {', '.join(METHODS)}"
        )
    words = tuple(w.lower() for w in words)
    baseline = tuple(w.lower() for w in baseline_words)
    layers = sorted({lm.resolve_layer(layer) for layer in layers})
    directory = (cache_dir or cache_root() / "vectors") / lm.fingerprint[:16]
    key = f"{method}-{word_list_hash(words)}-{word_list_hash(baseline)}"
    cached = {
        layer: _load(directory / f"{key}-L{layer}.safetensors", layer, method, words)
        for layer in layers
    }
    missing = [layer for layer, found in cached.items() if found is None]
    if missing:
        activations, medians = _read_activations(lm, words + baseline, missing, method, batch_size)
        for layer in missing:
            acts = activations[layer]
            vectors = acts[: len(words)] - acts[len(words) :].mean(0)
            extracted = ConceptVectors(layer, method, words, vectors, medians[layer])
            cached[layer] = extracted
            _save(directory / f"{key}-L{layer}.safetensors", extracted)
    return {layer: found for layer, found in cached.items() if found is not None}


def random_vectors(like: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """[count, D] random Gaussian directions, each with the norm of `like`.

    `like` is [D] (one norm for all) or [N, D] (norms taken rowwise).
    """
    generator = torch.Generator().manual_seed(seed)
    width = like.shape[-1]
    directions = torch.randn(count, width, generator=generator)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    norms = like.float().norm(dim=-1).reshape(-1, 1)
    if norms.shape[0] not in (1, count):
        raise ConfigError(
            f"cannot match {count} random vectors to {norms.shape[0]} reference norms"
        )
    return directions * norms


def _read_activations(
    lm: LoadedModel, words: Sequence[str], layers: list[int], method: str, batch_size: int
) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    rows: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    norms: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(words), batch_size):
        chunk = words[start : start + batch_size]
        prompts = []
        for word in chunk:
            turns = [("user", CONCEPT_PROMPT.format(word=word))]
            prompts.append(render_chat(lm.tokenizer, turns, {"word": SpanRef.of(turns, 0, word)}))
        width = max(len(p.input_ids) for p in prompts)
        pad = lm.tokenizer.pad_token_id
        ids = torch.tensor(
            [[pad] * (width - len(p.input_ids)) + list(p.input_ids) for p in prompts],
            device=lm.device,
        )
        mask = (
            torch.arange(width, device=lm.device)[None]
            >= torch.tensor([width - len(p.input_ids) for p in prompts], device=lm.device)[:, None]
        ).long()
        positions = positions_from_mask(mask)
        # Read index: the last prompt token, or the word's last token (shifted by the left padding).
        if method == "last_token":
            read = torch.full((len(chunk),), width - 1, device=lm.device)
        else:
            read = torch.tensor(
                [width - len(p.input_ids) + p.spans["word"][1] - 1 for p in prompts],
                device=lm.device,
            )
        # logits_to_keep=1: only residuals are read, and full-width logits of every position
        # (rows x tokens x vocabulary) cost more than the whole rest of the forward.
        with torch.inference_mode(), record(lm, layers) as recorded:
            lm.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions.clamp(min=0),
                logits_to_keep=1,
            )
        valid = positions > 0
        for layer in layers:
            acts = recorded[layer].float()
            rows[layer].append(acts[torch.arange(len(chunk)), read].cpu())
            norms[layer].append(acts[valid].norm(dim=-1).cpu())
    activations = {layer: torch.cat(rows[layer]) for layer in layers}
    medians = {layer: float(torch.cat(norms[layer]).median()) for layer in layers}
    return activations, medians


def _save(path: Path, vectors: ConceptVectors) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "layer": str(vectors.layer),
        "method": vectors.method,
        "words": json.dumps(list(vectors.words)),
        "median_residual_norm": repr(vectors.median_residual_norm),
    }
    staging = path.with_suffix(".tmp")
    save_file({"vectors": vectors.vectors.contiguous()}, str(staging), metadata=metadata)
    staging.replace(path)


def _load(path: Path, layer: int, method: str, words: tuple[str, ...]) -> ConceptVectors | None:
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensor = handle.get_tensor("vectors")
    if tuple(json.loads(metadata["words"])) != words:
        return None
    return ConceptVectors(layer, method, words, tensor, float(metadata["median_residual_norm"]))
