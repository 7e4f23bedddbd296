"""An LLM judge behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server).

`build_judge("openai:<model>", base_url=..., cache_dir=...)` builds it. Requests go out
concurrently from a thread pool over one synchronous client, at temperature 0. Retries are the
`openai` client's own: exponential backoff with jitter (0.5 s doubling, at most 8 s, or the
server's Retry-After) on connection errors, timeouts, 408, 409, 429 and 5xx, `max_retries` times.

`response_format` optionally constrains the answer to the verdict's JSON schema, for servers
that can: `json_schema` (OpenAI, vLLM), `json_object_schema` (llama-cpp-python), `json_object`
(any JSON); the default `none` sends no constraint and relies on the prompt and the parser.

A request that still fails, or whose answer cannot be parsed, gives a `Grade` with `error` set,
`raw` kept and empty criteria, never a "no"; failures are not cached, so a re-run retries them.
Once `_BREAKER_AFTER` requests in a row have failed to reach the endpoint, the rest of the batch
fails at once with the same message instead of waiting out every retry.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import openai

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
    verdict_schema,
)

DEFAULT_MODEL = "gpt-4o-mini"
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_DUMMY_KEY = "sk-no-key-required"
_BREAKER_AFTER = 3
_MAX_TOKENS = 400
RESPONSE_FORMATS = ("none", "json_object", "json_schema", "json_object_schema")


class _Breaker:
    """Counts consecutive unreachable-endpoint failures across worker threads."""

    def __init__(self, limit: int) -> None:
        self._limit, self._count, self._lock = limit, 0, threading.Lock()
        self.message: str | None = None

    def record(self, unreachable_message: str | None) -> None:
        with self._lock:
            if unreachable_message is None:
                self._count = 0
                return
            self._count += 1
            if self._count >= self._limit:
                self.message = unreachable_message


class OpenAIJudge:
    """Grades responses with a chat model behind an OpenAI-compatible endpoint."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        response_format: str = "none",
        http_client: Any = None,
    ) -> None:
        """Set up the client (no request is sent until `grade_many`).

        Args:
            model: The model name sent with each request.
            base_url: The endpoint, e.g. `http://127.0.0.1:8000/v1`; default `$OPENAI_BASE_URL`,
                else OpenAI's.
            api_key: Default `$OPENAI_API_KEY`; a dummy key for a loopback `base_url`.
            cache_dir: The verdict folder; default `default_cache_dir()`.
            use_cache: False to neither read nor write cached verdicts.
            max_concurrency: Requests in flight at once.
            timeout_s: Per-attempt timeout in seconds.
            max_retries: Retries per request on connection errors, timeouts, 408/409/429/5xx.
            response_format: One of `RESPONSE_FORMATS` (see the module docstring).
            http_client: An `httpx` client for the `openai` client (proxies, request counting).

        Raises:
            JudgeError: When no API key is available for a non-loopback endpoint, or an option
                is out of range.

        """
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise JudgeError(
                f"bad judge options max_concurrency={max_concurrency}, max_retries={max_retries}, "
                f"timeout_s={timeout_s}: need max_concurrency >= 1, max_retries >= 0, timeout_s > 0"
            )
        if response_format not in RESPONSE_FORMATS:
            raise JudgeError(
                f"unknown response_format {response_format!r}; known: {', '.join(RESPONSE_FORMATS)}"
            )
        self.response_format = response_format
        self.model = model
        self.name = f"openai:{model}"
        self.version = PROMPT_VERSION
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if urlparse(self.base_url).hostname not in _LOOPBACK:
                raise JudgeError(
                    f"no API key for judge endpoint {self.base_url}: set OPENAI_API_KEY or pass "
                    "api_key (a local server on 127.0.0.1 needs none)"
                )
            key = _DUMMY_KEY
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self._client = openai.OpenAI(
            api_key=key,
            base_url=self.base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client,
        )
        self.cache = VerdictCache(cache_dir or default_cache_dir()) if use_cache else None

    @property
    def judge_id(self) -> str:
        """Return the name recorded in every grade: `openai:<model>@<prompt version>`."""
        return f"{self.name}@{self.version}"

    def cache_key(self, request: GradeRequest) -> str:
        """Hash (model, prompt version, response format, request) into `request`'s cache key."""
        return content_key("openai", self.model, PROMPT_VERSION, self.response_format, request)

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        """Grade every request in order; cached verdicts are reused, failures carry `error`."""
        grades, todo = split_cached(self.cache, requests, self.cache_key)
        breaker = _Breaker(_BREAKER_AFTER)
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(len(todo), 1))) as pool:
            for index, grade in zip(
                todo,
                pool.map(lambda i: self._grade_one(requests[i], breaker), todo),
                strict=True,
            ):
                grades[index] = grade
        return [grade for grade in grades if grade is not None]

    def _failure(self, message: str, raw: str | None = None) -> Grade:
        return Grade(criteria={}, judge=self.judge_id, error=message, raw=raw)

    def _unreachable(self, error: Exception) -> str:
        return (
            f"judge endpoint {self.base_url} unreachable after {self.max_retries} retries "
            f"({type(error).__name__}: {error}); start the server there or point base_url / "
            "OPENAI_BASE_URL at a running OpenAI-compatible endpoint, then re-run: failed grades "
            "are not cached"
        )

    def _format_options(self, request: GradeRequest) -> dict[str, Any]:
        if self.response_format == "none":
            return {}
        if self.response_format == "json_object":
            return {"response_format": {"type": "json_object"}}
        schema = verdict_schema(request)
        if self.response_format == "json_object_schema":
            return {"response_format": {"type": "json_object", "schema": schema}}
        spec = {"name": "verdict", "strict": True, "schema": schema}
        return {"response_format": {"type": "json_schema", "json_schema": spec}}

    def _grade_one(self, request: GradeRequest, breaker: _Breaker) -> Grade:
        if breaker.message is not None:
            return self._failure(f"not sent: {breaker.message}")
        try:
            messages = build_messages(request)
        except JudgeError as error:
            return self._failure(str(error))
        try:
            completion = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0,
                max_tokens=_MAX_TOKENS,
                **self._format_options(request),
            )
        except (openai.APIConnectionError, openai.APITimeoutError) as error:
            message = self._unreachable(error)
            breaker.record(message)
            return self._failure(message)
        except openai.APIStatusError as error:
            fix = {
                401: "check OPENAI_API_KEY",
                403: "check the key's permissions",
                404: f"check the model name {self.model!r} and the /v1 in base_url",
            }
            hint = fix.get(error.status_code, "see the server's log")
            breaker.record(None)
            return self._failure(
                f"judge endpoint {self.base_url} answered HTTP {error.status_code}: "
                f"{error.message}; {hint}",
                raw=getattr(error, "body", None) and str(error.body),
            )
        breaker.record(None)
        raw = (completion.choices[0].message.content or "") if completion.choices else ""
        try:
            asked, evidence = parse_verdict(request, raw)
        except VerdictParseError as error:
            return self._failure(f"unparseable judge output: {error}", raw=raw)
        grade = Grade(
            criteria=finish_criteria(request.protocol, asked),
            judge=self.judge_id,
            evidence=evidence,
            raw=raw,
        )
        if self.cache is not None:
            self.cache.put(self.cache_key(request), grade)
        return grade


@register_judge("openai")
def openai_judge(model: str = DEFAULT_MODEL, **options: Any) -> OpenAIJudge:
    """Build an `OpenAIJudge` from the spec `openai:<model>` and keyword options."""
    return OpenAIJudge(model, **options)
