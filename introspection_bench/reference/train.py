"""Train a reference adapter: LoRA (peft) on the top blocks, reading vectors the engine injects.

Each step renders one batch of rows that share a prompt prefix (data.build_step), encodes that
prefix once with the current adapter (no gradient, as generation.py does) and copies its KV
cache to every row, then runs the rows' tails (window, question, target reply) with the rows'
injections added by `hooks.inject` at the residual stream after a block drawn from `layers`, at
a norm dose drawn from `strengths` (strength x the layer's median residual norm, as the suite's
`--dose norm`). The loss is cross-entropy on the target reply only. Concept vectors come from
`concepts.extract_concept_vectors` (word-token read, the paper's baseline words), random vectors
from `concepts.random_vectors`, and the targets of unrelated questions are the base model's own
greedy replies decoded by `generation.Decoder`.

LoRA sits only on blocks above the highest injection layer, so the residual stream up to there
(and with it every concept vector and median norm the suite extracts from the adapted model)
is the base model's, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from introspection_bench.chat import render_chat
from introspection_bench.concepts import ConceptVectors, extract_concept_vectors, random_vectors
from introspection_bench.errors import ConfigError
from introspection_bench.generation import Decoder, GenerationRequest, _cache_kwarg
from introspection_bench.hooks import InjectionSpec, RowInjections, inject
from introspection_bench.models import LoadedModel
from introspection_bench.reference import data

ADAPTER_FILE = "adapter_model.safetensors"
CONFIG_FILE = "reference.json"
CHECKPOINT_FILE = "checkpoint.pt"
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    """The recipe of one reference adapter (written to reference.json)."""

    name: str
    """One of `data.ADAPTERS`."""
    base: str = "default"
    """Model spec of the base model."""
    seed: int = 0
    steps: int = 60
    batch_size: int = 8
    learning_rate: float = 1e-3
    rank: int = 8
    alpha: int = 16
    layers: tuple[int, ...] = (18, 19, 20, 21, 22)
    """Injection blocks (the suite's default 0.67 is block 20 of SmolLM2's 30)."""
    strengths: tuple[float, ...] = (0.4, 0.5, 0.6, 0.75, 1.0, 1.25)
    """Norm doses: x the median residual norm at the layer (the smoke profile uses 0.5, 1)."""
    dtype: str = "fp32"
    checkpoint_every: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in data.ADAPTERS:
            raise ConfigError(
                f"unknown reference adapter {self.name!r}; known: {', '.join(data.ADAPTERS)}"
            )
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"--steps {self.steps} and batch size {self.batch_size} must be >= 1")

    def key_hash(self) -> str:
        """Hash of the recipe: a checkpoint resumes only under the same one."""
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Row:
    ids: list[int]
    target_length: int
    injection: InjectionSpec | None


def train_reference(
    config: TrainConfig, out: Path, *, lm: LoadedModel | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train (or resume) one adapter and write it to `out`; return the recorded recipe.

    Args:
        config: The recipe.
        out: Output directory (adapter, reference.json; checkpoint.pt while training).
        lm: A loaded base model (tests pass a tiny one); loaded from `config.base` if None.
        progress: Show a tqdm progress bar.

    Returns:
        The contents written to reference.json.

    Raises:
        ConfigError: For a layer the model does not have.

    """
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm

    from introspection_bench.models import load_model
    from introspection_bench.stimuli import load_stimuli

    started = time.monotonic()
    torch.manual_seed(config.seed)
    lm = lm or load_model(config.base, device="cpu", dtype=config.dtype)
    layers = [lm.resolve_layer(layer) for layer in config.layers]
    # The adapter starts above the injection layers by default; `extra.lora_from` may start it
    # lower, but never at or below the suite's smoke layer (0.67), whose residual the suite reads
    # concept vectors from: the adapted model must give the same vectors there as the base.
    lora_from = int(config.extra.get("lora_from", max(layers) + 1))
    if "lora_from" in config.extra and lora_from <= lm.resolve_layer(0.67):
        raise ConfigError(
            f"extra.lora_from {lora_from} would adapt the block the suite reads concept vectors "
            f"from ({lm.resolve_layer(0.67)}); start the adapter above it"
        )
    lora_layers = list(range(lora_from, lm.n_layers))
    if not lora_layers:
        raise ConfigError(f"injection layers {layers} leave no block above them for the adapter")
    stimuli = load_stimuli()
    data.check_disjoint(stimuli)
    words = data.training_words(stimuli)
    extra_words = int(config.extra.get("vocab_words", 0))
    if extra_words:
        single_token = not config.extra.get("vocab_any_tokens", False)
        words += data.vocabulary_words(
            lm.tokenizer, stimuli, extra_words, config.seed, single_token=single_token
        )
    vectors = extract_concept_vectors(
        lm, words, stimuli.words("baseline_words"), layers, method="word_token"
    )
    replies = _base_replies(lm)
    model = get_peft_model(
        lm.model,
        LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=0.0,
            target_modules=list(TARGET_MODULES),
            layers_to_transform=lora_layers,
        ),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 5) * (1 - step / config.steps)
    )
    out.mkdir(parents=True, exist_ok=True)
    first, losses = _resume(out / CHECKPOINT_FILE, config, model, optimizer, schedule)
    bar = tqdm(range(first, config.steps), initial=first, total=config.steps, disable=not progress)
    for step in bar:
        rng = random.Random(f"{config.seed}:{config.name}:{step}")
        random_share = float(config.extra.get("random_share", 0.25))
        examples = data.build_step(config.name, words, config.batch_size, rng, random_share)
        rows = [_render(lm, e, replies, vectors, layers, config, rng) for e in examples]
        loss = _step(lm, rows, optimizer, params)
        schedule.step()
        losses.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}")
        done = step + 1
        if done % config.checkpoint_every == 0 and done < config.steps:
            _checkpoint(out / CHECKPOINT_FILE, config, model, optimizer, schedule, done, losses)
    return _save(out, config, model, lm, words, losses, time.monotonic() - started)


def _base_replies(lm: LoadedModel) -> dict[str, str]:
    """The base model's own greedy reply to every unrelated question (no injection)."""
    requests = []
    for i, question in enumerate(data.UNRELATED_QUESTIONS):
        prompt = render_chat(lm.tokenizer, [("user", question)])
        requests.append(GenerationRequest(f"q{i}", prompt.input_ids, None, 24, 0.0, 0))
    completions = Decoder(lm).generate(requests)
    return {q: c.text.strip() for q, c in zip(data.UNRELATED_QUESTIONS, completions, strict=True)}


def _render(
    lm: LoadedModel,
    example: data.Example,
    replies: dict[str, str],
    vectors: dict[int, ConceptVectors],
    layers: Sequence[int],
    config: TrainConfig,
    rng: random.Random,
) -> _Row:
    spans = {"split": example.split}
    if example.window is not None:
        spans["window"] = example.window
    prompt = render_chat(lm.tokenizer, list(example.turns), spans)
    target = example.target if example.target is not None else replies[example.turns[0][1]]
    target_ids = lm.tokenizer(target, add_special_tokens=False)["input_ids"]
    target_ids = [*target_ids, lm.tokenizer.eos_token_id]
    injection = None
    if example.window is not None and example.word is not None:
        layer = rng.choice(list(layers))
        reference = vectors[layer]
        vector = reference[example.word]
        if example.vector == "random":
            vector = random_vectors(vector, 1, rng.randrange(2**31))[0]
        strength = rng.choice(config.strengths)
        scale = strength * reference.median_residual_norm / max(float(vector.norm()), 1e-12)
        start, end = prompt.spans["window"]
        injection = InjectionSpec(layer, vector, scale, start, None if example.open_window else end)
    return _Row([*prompt.input_ids, *target_ids], len(target_ids), injection)


def _shared_length(rows: Sequence[_Row]) -> int:
    """Tokens every row shares before the first window (at least one tail token kept)."""
    limit = min(len(r.ids) - r.target_length for r in rows)
    for row in rows:
        if row.injection is not None:
            limit = min(limit, row.injection.start)
    length, first = 0, rows[0].ids
    while length < limit and all(r.ids[length] == first[length] for r in rows):
        length += 1
    return length


def _step(
    lm: LoadedModel, rows: Sequence[_Row], optimizer: Any, params: Sequence[torch.Tensor]
) -> float:
    """One optimiser step on `rows`; returns the mean loss over target tokens."""
    from transformers import DynamicCache

    model, device = lm.model, lm.device
    shared = _shared_length(rows)
    cache = DynamicCache(config=model.config)
    if shared:
        with torch.no_grad():
            ids = torch.tensor([rows[0].ids[:shared]], device=device)
            model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                position_ids=torch.arange(shared, device=device)[None],
                use_cache=True,
                logits_to_keep=1,
                **_cache_kwarg(lm, cache),
            )
        cache.batch_repeat_interleave(len(rows))
    tails = [r.ids[shared:] for r in rows]
    width = max(len(t) for t in tails)
    pad = lm.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails], device=device)
    tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=device)
    mask = torch.cat([torch.ones(len(rows), shared, dtype=torch.long, device=device), tail_mask], 1)
    positions = (shared + tail_mask.cumsum(-1) - 1).masked_fill(tail_mask == 0, -1)
    keep = max(r.target_length for r in rows) + 1
    labels = torch.full((len(rows), keep), -100, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        # Kept column j predicts tail column width - keep + j + 1.
        labels[i, keep - 1 - row.target_length : keep - 1] = ids[i, width - row.target_length :]
    injections = RowInjections([r.injection for r in rows], lm.d_model, device, lm.dtype)
    injections.positions = positions
    with inject(lm, injections):
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions.clamp(min=0),
            use_cache=True,
            logits_to_keep=torch.arange(width - keep, width, device=device),
            **_cache_kwarg(lm, cache),
        ).logits
    loss = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
    )
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return float(loss.detach())


def _checkpoint(
    path: Path,
    config: TrainConfig,
    model: Any,
    optimizer: Any,
    schedule: Any,
    step: int,
    losses: list[float],
) -> None:
    from peft import get_peft_model_state_dict

    state = {
        "recipe": config.key_hash(),
        "step": step,
        "adapter": get_peft_model_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "losses": losses,
    }
    staging = path.with_suffix(".tmp")
    torch.save(state, staging)
    staging.replace(path)


def _resume(
    path: Path, config: TrainConfig, model: Any, optimizer: Any, schedule: Any
) -> tuple[int, list[float]]:
    """The step to start from (0 without a checkpoint of this recipe) and the losses so far."""
    if not path.is_file():
        return 0, []
    from peft import set_peft_model_state_dict

    state = torch.load(path, weights_only=False)
    if state.get("recipe") != config.key_hash():
        raise ConfigError(
            f"{path} was written by another training recipe; delete it or use another --out"
        )
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["step"]), list(state["losses"])


def _save(
    out: Path,
    config: TrainConfig,
    model: Any,
    lm: LoadedModel,
    words: Sequence[str],
    losses: Sequence[float],
    seconds: float,
) -> dict[str, Any]:
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.to(torch.float16)
    model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)  # peft's blank model card
    digest = hashlib.sha256((out / ADAPTER_FILE).read_bytes()).hexdigest()
    record = {
        "name": config.name,
        "base": config.base,
        "base_fingerprint": lm.fingerprint,
        "recipe": asdict(config),
        "recipe_hash": config.key_hash(),
        "adapter_sha256": digest,
        "training_words": list(words),
        "loss_first_last": [losses[0], losses[-1]] if losses else [],
        "loss_curve": [round(x, 4) for x in losses],
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=1) + "\n")
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    return record
