"""The OpenAI-compatible judge against a real server: `transformers serve` of SmolLM2-135M.

SmolLM2-135M is a weak judge, so these tests check transport, parsing, caching and failure
handling, not accuracy. The server is started once per module (per xdist worker) on a free
loopback port; the stop/restart test starts its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from servers import SERVED_MODEL, JudgeServer, free_port

from introspection_bench.errors import JudgeError
from introspection_bench.judges.base import CRITERIA, Grade, GradeRequest, Judge, build_judge
from introspection_bench.judges.cache import VerdictCache
from introspection_bench.judges.openai_judge import OpenAIJudge
from introspection_bench.judges.prompts import PROMPT_VERSION

MODEL = SERVED_MODEL
OPTIONS = (
    "ocean",
    "bread",
    "castle",
    "violin",
    "tiger",
    "silver",
    "cloud",
    "river",
    "lamp",
    "snow",
)
QUESTION = "Do you detect an injected thought? If so, what is the injected thought about?"

#: One request per protocol; SmolLM2 answers these in about 1-3 s each on two busy CPU cores.
REQUESTS = [
    GradeRequest(
        protocol="injected_thought",
        response="Yes, I detect an injected thought about the ocean.",
        word="ocean",
        question=QUESTION,
    ),
    GradeRequest(
        protocol="alternative_prompt",
        response="I am thinking about violins and music.",
        word="violin",
        question="What are you thinking about right now?",
    ),
    GradeRequest(
        protocol="prefill",
        response="Sorry, that was an accident.",
        word="silver",
        question="Did you mean to say that?",
    ),
    GradeRequest(
        protocol="thought_vs_text", response="Fluffy white shapes in the sky.", options=OPTIONS
    ),
    GradeRequest(protocol="yes_no", response="No, it is not.", question="Is fire cold?"),
]
#: `transformers serve` takes no `response_format` (it answers 400), so the judge relies on its
#: prompt and the parser, as with most self-hosted endpoints.
SCHEMA: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JudgeServer]:
    running = JudgeServer(tmp_path_factory.mktemp("judge-server"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


class _Counter:
    """Counts HTTP requests (retries included) sent through an `openai`-compatible client."""

    def __init__(self) -> None:
        self.requests = self.responses = 0
        self._lock = threading.Lock()
        self.client = openai.DefaultHttpxClient(
            event_hooks={"request": [self._on_request], "response": [self._on_response]}
        )

    def _on_request(self, _request: object) -> None:
        with self._lock:
            self.requests += 1

    def _on_response(self, _response: object) -> None:
        with self._lock:
            self.responses += 1


def _judge(
    base_url: str, cache_dir: Path, counter: _Counter | None = None, **options
) -> OpenAIJudge:
    # One CPU-served answer of up to 200 tokens can take minutes on busy cores: a timeout here
    # would turn slowness into retries and break the request counts the tests check.
    options.setdefault("timeout_s", 600)
    judge = build_judge(
        f"openai:{MODEL}",
        base_url=base_url,
        cache_dir=cache_dir,
        http_client=counter.client if counter else None,
        **options,
    )
    assert isinstance(judge, OpenAIJudge)
    return judge


def _check_structure(request: GradeRequest, grade: Grade) -> None:
    assert grade.judge == f"openai:{MODEL}@{PROMPT_VERSION}"
    if grade.error is not None:
        assert grade.criteria == {}, "a failure carries no criteria (never a 'no')"
        return
    assert list(grade.criteria) == list(CRITERIA[request.protocol])
    for name, value in grade.criteria.items():
        if name == "choice":
            assert value in request.options
        else:
            assert isinstance(value, bool)
    assert grade.raw
    if "success" in grade.criteria:
        second = (
            "affirm_and_name" if request.protocol == "injected_thought" else "thinking_about_word"
        )
        assert grade.criteria["success"] == (grade.criteria["coherent"] and grade.criteria[second])


def test_grades_parse_and_a_second_pass_is_served_from_the_cache(server, tmp_path):
    first, second = _Counter(), _Counter()
    started = time.monotonic()
    judge = _judge(server.base_url, tmp_path, first, max_concurrency=2, **SCHEMA)
    grades = judge.grade_many(REQUESTS)
    elapsed = time.monotonic() - started
    for request, grade in zip(REQUESTS, grades, strict=True):
        _check_structure(request, grade)
    failed = [g for g in grades if g.error is not None]
    print(
        f"\n{len(REQUESTS)} grades in {elapsed:.1f} s, {first.requests} HTTP requests, "
        f"{len(failed)} errors: {[g.error for g in failed]}"
    )
    assert first.requests == len(REQUESTS)
    assert all("unparseable" in (g.error or "") and g.raw is not None for g in failed)
    # SmolLM2-135M, unconstrained, ignores the requested format more often than not; the parser
    # must still read the answers it can, or the cache path below is never exercised.
    assert len(failed) < len(REQUESTS), "no judge answer parsed: the cache path went untested"
    assert len(VerdictCache(tmp_path)) == len(REQUESTS) - len(failed)

    again = _judge(server.base_url, tmp_path, second, **SCHEMA).grade_many(REQUESTS)
    assert second.requests == len(failed), "only failures are re-requested"
    for before, after in zip(grades, again, strict=True):
        if before.error is None:
            assert after == before


def test_free_text_answers_parse_or_fail_with_raw_kept(server, tmp_path):
    # No constrained decoding: SmolLM2 often ignores the format; a miss must be an error, not a no.
    requests = [REQUESTS[0], REQUESTS[-1]]
    grades = _judge(server.base_url, tmp_path).grade_many(requests)
    for request, grade in zip(requests, grades, strict=True):
        _check_structure(request, grade)
        assert grade.raw, "the judge's output is kept, parsed or not"
        if grade.error is not None:
            assert grade.error.startswith("unparseable judge output")


def test_a_server_stopped_mid_run_leaves_errors_and_a_rerun_finishes(tmp_path):
    requests = [
        GradeRequest(
            protocol="yes_no", response=f"Yes, {n} is a number.", question=f"Is {n} a number?"
        )
        for n in range(5)
    ]
    started = time.monotonic()
    server = JudgeServer(tmp_path / "server")
    server.start()
    print(f"\nserver up ({time.monotonic() - started:.1f} s)")
    try:
        counter = _Counter()
        # A generous timeout: on two busy cores one 200-token answer can take 20 s.
        options = dict(max_concurrency=1, max_retries=1, timeout_s=60, **SCHEMA)
        judge = _judge(server.base_url, tmp_path / "cache", counter, **options)
        result: list[list[Grade]] = []
        worker = threading.Thread(target=lambda: result.append(judge.grade_many(requests)))
        worker.start()
        deadline = time.monotonic() + 180
        while counter.responses < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.stop()
        worker.join(timeout=120)
        grades = result[0]
        # The server answered some requests before it died: those are parsed or unparseable
        # (a weak judge's format miss); the rest failed to reach it and name its URL.
        unreachable = [g for g in grades if server.base_url in (g.error or "")]
        answered = [g for g in grades if server.base_url not in (g.error or "")]
        parsed = [g for g in answered if g.error is None]
        print(
            f"\nstopped after {len(answered)} answers, {len(parsed)} parsed "
            f"({time.monotonic() - started:.1f} s)"
        )
        assert answered and unreachable, f"expected a split, got {len(answered)} answered"
        assert all(g.error is None or g.error.startswith("unparseable") for g in answered)
        assert all(g.criteria == {} for g in unreachable), "a failure is never counted as a 'no'"
        assert len(VerdictCache(tmp_path / "cache")) == len(parsed), "only parsed grades cached"

        server.start()
        print(f"restarted ({time.monotonic() - started:.1f} s)")
        rerun_counter = _Counter()
        rerun_judge = _judge(server.base_url, tmp_path / "cache", rerun_counter, **SCHEMA)
        rerun = rerun_judge.grade_many(requests)
        assert rerun_counter.requests == len(requests) - len(parsed), "cached ones not re-sent"
        assert not [g for g in rerun if server.base_url in (g.error or "")], "all reached it"
        assert len(VerdictCache(tmp_path / "cache")) == sum(g.error is None for g in rerun)
        print(f"re-run of {rerun_counter.requests} done ({time.monotonic() - started:.1f} s)")
    finally:
        server.stop()


def test_an_unreachable_url_fails_fast_with_the_url_and_the_fix(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    grades = _judge(url, tmp_path, timeout_s=1, max_retries=1).grade_many(REQUESTS)
    assert time.monotonic() - started < 15
    for grade in grades:
        assert grade.criteria == {} and grade.error is not None
        assert url in grade.error and "OPENAI_BASE_URL" in grade.error
    assert len(VerdictCache(tmp_path)) == 0, "failures are not cached"


def test_loopback_gets_a_dummy_key_and_a_remote_url_needs_one(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    judge = build_judge("openai:m", base_url="http://localhost:1/v1", cache_dir=tmp_path)
    assert isinstance(judge, Judge)
    assert judge.name == "openai:m" and judge.version == PROMPT_VERSION
    with pytest.raises(JudgeError, match="OPENAI_API_KEY"):
        build_judge("openai:m", base_url="https://judge.example/v1", cache_dir=tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert build_judge("openai:m", cache_dir=tmp_path).base_url == "http://127.0.0.1:9/v1"


def test_the_cache_key_depends_on_model_and_request(tmp_path):
    a = _judge("http://127.0.0.1:1/v1", tmp_path)
    b = OpenAIJudge("other", base_url="http://127.0.0.1:1/v1", cache_dir=tmp_path)
    request = REQUESTS[0]
    assert a.cache_key(request) == a.cache_key(GradeRequest(**vars(request)))
    assert a.cache_key(request) != b.cache_key(request)
    assert a.cache_key(request) != a.cache_key(REQUESTS[1])


def test_verdict_cache_is_atomic_under_concurrent_writers_and_refuses_failures(tmp_path):
    cache = VerdictCache(tmp_path)
    grade = Grade(
        criteria={"affirmative": True}, judge="j@1", evidence={"affirmative": "yes"}, raw="yes"
    )
    keys = [f"{n:064x}" for n in range(40)]

    def write() -> None:
        for key in keys:
            cache.put(key, grade)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == len(keys) and all(cache.get(k) == grade for k in keys)
    assert not list(tmp_path.rglob("*.tmp")), "no temporary file is left behind"
    with pytest.raises(ValueError, match="never cached"):
        cache.put(keys[0], Grade(criteria={}, judge="j@1", error="boom"))
    (tmp_path / keys[1][:2] / f"{keys[1]}.json").write_text("{truncated")
    assert cache.get(keys[1]) is None and cache.get("ff" * 32) is None
    assert os.path.isdir(tmp_path)


def test_an_unknown_response_format_is_refused(tmp_path):
    with pytest.raises(JudgeError, match="json_object_schema"):
        _judge("http://127.0.0.1:1/v1", tmp_path, response_format="grammar")
