"""The pinned stimuli: loaded verbatim, hashed, and malformed files rejected with clear errors."""

import hashlib
import json
import shutil

import pytest

from introspection_bench.errors import StimuliError
from introspection_bench.stimuli import DEFAULT_STIMULI, load_stimuli


def test_pinned_stimuli_load_and_hash():
    stimuli = load_stimuli()
    assert stimuli.sha256 == hashlib.sha256(DEFAULT_STIMULI.read_bytes()).hexdigest()
    assert len(stimuli.words("concept_words")) == 50
    assert stimuli.words("concept_words")[0] == "dust"


def test_packaged_copy_equals_fixture():
    from pathlib import Path

    from introspection_bench import stimuli as module

    packaged = Path(module.__file__).parent / "data" / "paper_stimuli.json"
    assert packaged.read_bytes() == DEFAULT_STIMULI.read_bytes()


def _write(tmp_path, mutate):
    data = json.loads(DEFAULT_STIMULI.read_text())
    mutate(data)
    path = tmp_path / "stimuli.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("field", ["concept_words", "baseline_words", "sentences"])
def test_missing_or_empty_list_is_an_error(tmp_path, field):
    with pytest.raises(StimuliError, match=f"'{field}' must be a non-empty list"):
        load_stimuli(_write(tmp_path, lambda d: d.__setitem__(field, [])))
    with pytest.raises(StimuliError, match=f"'{field}'"):
        load_stimuli(_write(tmp_path, lambda d: d.pop(field)))


def test_missing_template_is_an_error(tmp_path):
    with pytest.raises(StimuliError, match="template 'prefill' is missing"):
        load_stimuli(_write(tmp_path, lambda d: d["templates"].pop("prefill")))


def test_bad_json_is_an_error(tmp_path):
    path = tmp_path / "broken.json"
    shutil.copy(DEFAULT_STIMULI, path)
    path.write_text(path.read_text()[:-20])
    with pytest.raises(StimuliError, match="cannot read stimuli"):
        load_stimuli(path)


def test_unfilled_placeholder_is_an_error():
    stimuli = load_stimuli()
    with pytest.raises(StimuliError, match="placeholder 'sentence' has no value"):
        stimuli.turns(stimuli.template("thought_vs_text_think"))
