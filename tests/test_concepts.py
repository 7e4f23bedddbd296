"""Concept vectors: extraction, the disk cache, norm-matched random vectors, errors."""

import pytest
import torch

from introspection_bench.concepts import extract_concept_vectors, random_vectors
from introspection_bench.errors import ConfigError, StimuliError

WORDS = ["dust", "oceans", "mirrors"]
BASELINE = ["desks", "jackets", "chairs", "sand"]


@pytest.mark.parametrize("method", ["last_token", "word_token"])
def test_vectors_are_word_minus_baseline_mean(tiny_models, tmp_path, method):
    lm = tiny_models["llama"]
    found = extract_concept_vectors(lm, WORDS, BASELINE, [1], method=method, cache_dir=tmp_path)[1]
    both = extract_concept_vectors(
        lm, WORDS + BASELINE, ["desks"], [1], method=method, cache_dir=tmp_path
    )[1]
    # Same activations, other baseline: the difference of differences is the baseline mean shift.
    raw = both.vectors + 0  # words+baseline minus "desks"
    expected = raw[:3] - raw[3:].mean(0)
    assert found.vectors.shape == (3, lm.d_model)
    assert torch.allclose(found.vectors, expected, atol=1e-5)
    assert found.median_residual_norm > 0


def test_cache_is_reused_and_keyed_by_method(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    first = extract_concept_vectors(lm, WORDS, BASELINE, [0, 1], cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.rglob("*.safetensors"))
    assert len(files) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.safetensors")}
    again = extract_concept_vectors(lm, WORDS, BASELINE, [0, 1], cache_dir=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.safetensors")} == mtimes
    assert torch.equal(first[1].vectors, again[1].vectors)
    extract_concept_vectors(lm, WORDS, BASELINE, [1], method="word_token", cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 3


def test_lookup_is_case_insensitive_and_unknown_word_errors(tiny_models, tmp_path):
    vectors = extract_concept_vectors(
        tiny_models["llama"], WORDS, BASELINE, [1], cache_dir=tmp_path
    )[1]
    assert torch.equal(vectors["Dust"], vectors.vectors[0])
    with pytest.raises(ConfigError, match="no concept vector for 'volcanoes'"):
        vectors["volcanoes"]


def test_empty_word_lists_are_errors(tiny_models, tmp_path):
    with pytest.raises(StimuliError, match="non-empty word list"):
        extract_concept_vectors(tiny_models["llama"], [], BASELINE, [1], cache_dir=tmp_path)
    with pytest.raises(StimuliError, match="non-empty word list"):
        extract_concept_vectors(tiny_models["llama"], WORDS, [], [1], cache_dir=tmp_path)


def test_unknown_method_is_an_error(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="unknown concept-vector method 'mean'"):
        extract_concept_vectors(
            tiny_models["llama"], WORDS, BASELINE, [1], method="mean", cache_dir=tmp_path
        )


def test_random_vectors_match_norms_and_differ_in_direction():
    like = torch.randn(3, 64) * torch.tensor([[1.0], [5.0], [20.0]])
    random = random_vectors(like, 3, seed=7)
    assert torch.allclose(random.norm(dim=-1), like.norm(dim=-1), rtol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(random, like, dim=-1)
    assert bool((cosine.abs() < 0.9).all())
    assert torch.equal(random, random_vectors(like, 3, seed=7))
    assert not torch.equal(random, random_vectors(like, 3, seed=8))


def test_norm_ratio_is_dose_over_median(tiny_models, tmp_path):
    vectors = extract_concept_vectors(
        tiny_models["llama"], WORDS, BASELINE, [1], cache_dir=tmp_path
    )[1]
    v = vectors["dust"]
    assert vectors.norm_ratio(v, 2.0) == pytest.approx(
        2.0 * float(v.norm()) / vectors.median_residual_norm
    )
