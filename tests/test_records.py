"""Trial records: durable appends, resume, torn lines, configuration pinning, shard merging."""

import json

import pytest

from introspection_bench.errors import RecordsError
from introspection_bench.records import RecordStore, TrialRecord, read_records


def record(trial_id, **changes):
    fields = dict(
        trial_id=trial_id,
        protocol="injected_thought",
        protocol_version="1",
        condition="injected",
        concept="dust",
        layer=20,
        strength=0.5,
        injected_norm=10.0,
        norm_ratio=0.5,
        seed=1,
        model="default",
        model_fingerprint="f" * 64,
        chat_template_hash="c" * 64,
        stimuli_hash="s" * 64,
        prompt="p",
        prompt_sha256="h",
        completion="I detect dust.",
        stop_reason="eos",
        judge="",
    )
    fields.update(changes)
    return TrialRecord(**fields)


def test_appended_records_survive_a_new_store(tmp_path):
    store = RecordStore(tmp_path)
    store.append([record("a"), record("b")])
    again = RecordStore(tmp_path)
    assert len(again) == 2 and "a" in again and again.get("b").completion == "I detect dust."


def test_graded_line_replaces_the_ungraded_one(tmp_path):
    store = RecordStore(tmp_path)
    store.append([record("a")])
    store.append([record("a", judge="rule@1", grades={"affirms": True})])
    assert RecordStore(tmp_path).get("a").grades == {"affirms": True}


def test_torn_last_line_is_skipped_and_reruns(tmp_path):
    store = RecordStore(tmp_path)
    store.append([record("a"), record("b")])
    path = tmp_path / "trials.jsonl"
    path.write_text(path.read_text() + record("c").to_json()[:40])  # killed mid-write
    assert [r.trial_id for r in read_records(path)] == ["a", "b"]
    assert "c" not in RecordStore(tmp_path)


def test_torn_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text(record("a").to_json()[:30] + "\n" + record("b").to_json() + "\n")
    with pytest.raises(RecordsError, match="trials.jsonl:1 is not valid JSON"):
        list(read_records(path))


def test_claim_refuses_another_configuration(tmp_path):
    RecordStore(tmp_path).claim({"model": "default", "trials": 8})
    RecordStore(tmp_path).claim({"model": "default", "trials": 8})  # same: fine
    with pytest.raises(RecordsError, match="differs in: trials"):
        RecordStore(tmp_path).claim({"model": "default", "trials": 16})


def test_worker_shards_merge_into_one_file(tmp_path):
    RecordStore(tmp_path, "gw0").append([record("a")])
    RecordStore(tmp_path, "gw1").append([record("b"), record("a", judge="rule@1")])
    merged = RecordStore(tmp_path).merge_shards()
    lines = [json.loads(line) for line in merged.read_text().splitlines()]
    assert [line["trial_id"] for line in lines] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.glob("trials*.jsonl")) == ["trials.jsonl"]


def test_malformed_record_names_the_problem():
    with pytest.raises(RecordsError, match="malformed trial record"):
        TrialRecord.from_dict({"trial_id": "x"})


def test_append_after_a_torn_line_starts_a_clean_line(tmp_path):
    store = RecordStore(tmp_path)
    store.append([record("a")])
    path = tmp_path / "trials.jsonl"
    path.write_text(path.read_text() + record("b").to_json()[:40])  # killed mid-write
    RecordStore(tmp_path).append([record("c")])
    assert [r.trial_id for r in read_records(path)] == ["a", "c"]
    assert path.read_text().endswith("\n")


@pytest.mark.parametrize("line", ["[1, 2]", '"a string"', "42", "null"])
def test_a_json_line_that_is_not_an_object_is_a_one_line_error(tmp_path, line):
    path = tmp_path / "trials.jsonl"
    path.write_text(record("a").to_json() + "\n" + line + "\n" + record("b").to_json() + "\n")
    with pytest.raises(RecordsError, match=r"trials.jsonl:2 holds a JSON \w+, not a trial record"):
        RecordStore(tmp_path)


def test_a_record_with_a_mistyped_field_names_it(tmp_path):
    path = tmp_path / "trials.jsonl"
    data = json.loads(record("a").to_json()) | {"grades": [True]}
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(RecordsError, match=r"trials.jsonl:1: .*grades is list, not Mapping"):
        list(read_records(path))
