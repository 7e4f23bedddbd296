"""An LLM judge run locally: a Hugging Face chat model through transformers, greedy and batched.

`build_judge("hf:<repo id>")` loads from the local Hugging Face cache (`HF_HUB_OFFLINE=1` is
respected: nothing is downloaded then); `build_judge("local:<dir>")` loads a directory written by
`save_pretrained`. It uses the same prompts, parser, cache and failure rules as the OpenAI judge:
an unparseable answer gives a `Grade` with `error` and `raw` set and empty criteria, never cached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from introspection_bench.errors import JudgeError
from introspection_bench.judges.base import Grade, GradeRequest, register_judge
from introspection_bench.judges.cache import (
    VerdictCache,
    content_key,
    default_cache_dir,
    split_cached,
)
from introspection_bench.judges.prompts import (
    PROMPT_VERSION,
    VerdictParseError,
    build_messages,
    finish_criteria,
    parse_verdict,
)

_MAX_NEW_TOKENS = 400


class HFJudge:
    """Grades responses with a local chat model (transformers `AutoModelForCausalLM`)."""

    def __init__(
        self,
        model_id: str,
        *,
        kind: str = "hf",
        model: Any = None,
        tokenizer: Any = None,
        device: str = "cpu",
        batch_size: int = 8,
        max_new_tokens: int = _MAX_NEW_TOKENS,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
    ) -> None:
        """Load the model (or take a loaded one) and open the verdict cache.

        Args:
            model_id: A Hugging Face repo id (kind `hf`) or a directory (kind `local`).
            kind: `hf` or `local`; part of the judge's name.
            model: An already loaded causal LM to use instead of loading `model_id`.
            tokenizer: Its tokenizer (required with `model`).
            device: Where to load the model (`cpu`, `cuda`, ...).
            batch_size: Prompts generated together.
            max_new_tokens: The longest answer read.
            cache_dir: The verdict folder; default `default_cache_dir()`.
            use_cache: False to neither read nor write cached verdicts.

        Raises:
            JudgeError: When the model cannot be loaded or an option is out of range.

        """
        if batch_size < 1 or max_new_tokens < 1:
            raise JudgeError(
                f"bad judge options batch_size={batch_size}, max_new_tokens={max_new_tokens}: "
                "both must be >= 1"
            )
        self.model_id = model_id
        self.name = f"{kind}:{model_id}"
        self.version = PROMPT_VERSION
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        if model is None:
            model, tokenizer = _load(model_id, device)
        elif tokenizer is None:
            raise JudgeError("a preloaded judge model needs its tokenizer: pass tokenizer=...")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cache = VerdictCache(cache_dir or default_cache_dir()) if use_cache else None

    @property
    def judge_id(self) -> str:
        """Return the name recorded in every grade: `<kind>:<model>@<prompt version>`."""
        return f"{self.name}@{self.version}"

    def cache_key(self, request: GradeRequest) -> str:
        """Hash (judge name, prompt version, request) into the key of `request`'s verdict."""
        return content_key(self.name, PROMPT_VERSION, request)

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        """Grade every request in order; cached verdicts are reused, failures carry `error`."""
        grades, todo = split_cached(self.cache, requests, self.cache_key)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            for index, grade in zip(
                batch, self._grade_batch([requests[i] for i in batch]), strict=True
            ):
                grades[index] = grade
        return [grade for grade in grades if grade is not None]

    def _grade_batch(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        prompts: list[str | None] = []
        grades: list[Grade | None] = []
        for request in requests:
            try:
                messages = build_messages(request)
            except JudgeError as error:
                prompts.append(None)
                grades.append(Grade(criteria={}, judge=self.judge_id, error=str(error)))
                continue
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            prompts.append(text)
            grades.append(None)
        texts = [p for p in prompts if p is not None]
        outputs = iter(self._generate(texts) if texts else [])
        for position, request in enumerate(requests):
            if grades[position] is None:
                grades[position] = self._grade_output(request, next(outputs))
        return [grade for grade in grades if grade is not None]

    def _generate(self, texts: list[str]) -> list[str]:
        import torch

        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        encoded = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        with torch.inference_mode():
            generated = self.model.generate(
                **encoded,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = generated[:, encoded["input_ids"].shape[1] :]
        return list(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))

    def _grade_output(self, request: GradeRequest, raw: str) -> Grade:
        try:
            asked, evidence = parse_verdict(request, raw)
        except VerdictParseError as error:
            return Grade(
                criteria={},
                judge=self.judge_id,
                error=f"unparseable judge output: {error}",
                raw=raw,
            )
        grade = Grade(
            criteria=finish_criteria(request.protocol, asked),
            judge=self.judge_id,
            evidence=evidence,
            raw=raw,
        )
        if self.cache is not None:
            self.cache.put(self.cache_key(request), grade)
        return grade


def _load(model_id: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(
            model_id, local_files_only=offline, use_kernels=False
        )
    except (OSError, ValueError) as error:
        raise JudgeError(
            f"cannot load judge model {model_id!r} ({error}); with HF_HUB_OFFLINE=1 it must be in "
            "the local Hugging Face cache, or pass a directory as 'local:<dir>'"
        ) from error
    # typeshed's `functools.wraps` (around `PreTrainedModel.to`) does not bind `self`.
    return model.to(device), tokenizer  # type: ignore[arg-type]


@register_judge("hf")
def hf_judge(model_id: str = "", **options: Any) -> HFJudge:
    """Build an `HFJudge` from the spec `hf:<repo id>`."""
    if not model_id:
        raise JudgeError(
            "the hf judge needs a model: 'hf:<repo id>' (e.g. 'hf:Qwen/Qwen2.5-7B-Instruct')"
        )
    return HFJudge(model_id, kind="hf", **options)


@register_judge("local")
def local_judge(directory: str = "", **options: Any) -> HFJudge:
    """Build an `HFJudge` from the spec `local:<dir>` (a `save_pretrained` directory)."""
    if not directory:
        raise JudgeError("the local judge needs a directory: 'local:<dir>'")
    return HFJudge(directory, kind="local", **options)
