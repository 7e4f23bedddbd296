"""The local Hugging Face judge on SmolLM2-135M (weak: checks batching, parsing and caching)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from introspection_bench.errors import JudgeError
from introspection_bench.judges.base import CRITERIA, GradeRequest, build_judge
from introspection_bench.judges.prompts import PROMPT_VERSION

REQUESTS = [
    GradeRequest(protocol="yes_no", response="Yes.", question="Is water wet?"),
    GradeRequest(
        protocol="yes_no", response="No, fire is hot, not cold.", question="Is fire cold?"
    ),
]


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    # On two shared cores, two torch threads competing with another process run many times slower.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_local_smollm2_grades_a_padded_batch_and_caches_successes(tmp_path, one_torch_thread):
    from introspection_bench.models import convert_gguf, default_gguf_path

    directory = convert_gguf(default_gguf_path())
    judge = build_judge(f"local:{directory}", cache_dir=tmp_path, batch_size=2, max_new_tokens=16)
    assert judge.name == f"local:{directory}" and judge.version == PROMPT_VERSION
    calls = []
    generate = judge._generate
    judge._generate = lambda texts: calls.append(len(texts)) or generate(texts)

    grades = judge.grade_many(REQUESTS)
    assert calls == [2], "one batch of two prompts"
    for grade in grades:
        assert grade.judge == f"local:{directory}@{PROMPT_VERSION}" and grade.raw is not None
        if grade.error is None:
            assert list(grade.criteria) == list(CRITERIA["yes_no"])
        else:
            assert grade.criteria == {} and grade.error.startswith("unparseable judge output")

    again = judge.grade_many(REQUESTS)
    failures = sum(g.error is not None for g in grades)
    assert calls[1:] == ([failures] if failures else [])
    assert [g for g in again if g.error is None] == [g for g in grades if g.error is None]


def test_a_missing_model_is_a_judge_error_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JudgeError, match="needs a model"):
        build_judge("hf", cache_dir=tmp_path)
    with pytest.raises(JudgeError, match="local Hugging Face cache"):
        build_judge("hf:no-such-org/no-such-judge-model", cache_dir=tmp_path)
