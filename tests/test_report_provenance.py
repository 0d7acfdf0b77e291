from __future__ import annotations

import json

import pytest

from cnnlearn import report
from cnnlearn.report import provenance


def test_start_and_finish_record_how_a_run_was_made(monkeypatch):
    loads = iter([(0.5, 0.4, 0.3), (0.7, 0.5, 0.4)])
    monkeypatch.setattr(provenance.os, "getloadavg", lambda: next(loads))
    record = provenance.start({"epochs": 3}, argv=["benchmarks/x.py", "--epochs", "3"])
    assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
    assert record["command"] == "python benchmarks/x.py --epochs 3"
    assert record["config"] == {"epochs": 3}
    assert record["machine"]["cpu_count"] >= 1 and "keras" in record["machine"]
    provenance.finish(record)
    assert record["load_average"] == {"start": [0.5, 0.4, 0.3], "end": [0.7, 0.5, 0.4]}
    assert record["noisy"] is False and record["finished_at"] >= record["started_at"]
    json.dumps(record)  # a result file can hold it
    assert provenance.notes({"provenance": {**record, "dirty": False}}) == []


def test_a_run_that_keeps_its_cores_busy_is_not_noisy(monkeypatch):
    loads = iter([(0.5, 1, 1), (2.1, 2, 2)])  # the run's own two busy threads
    monkeypatch.setattr(provenance.os, "getloadavg", lambda: next(loads))
    record = provenance.start({}, argv=["b.py"])
    record["machine"]["cpu_count"] = 2
    assert provenance.finish(record)["noisy"] is False


def test_a_busy_machine_is_marked_noisy_and_the_note_says_so(monkeypatch):
    loads = iter([(1.0, 1, 1), (14.6, 13, 12)])
    monkeypatch.setattr(provenance.os, "getloadavg", lambda: next(loads))
    record = provenance.start({}, argv=["b.py"])
    record["machine"]["cpu_count"] = 2
    assert provenance.finish(record)["noisy"] is True
    (note,) = [n for n in provenance.notes({"provenance": record}) if "busy" in n]
    assert "load average 14.6 on 2 cores" in note


def test_notes_name_what_an_old_or_partial_record_lacks():
    assert provenance.notes({}) == [
        "Made before result files recorded their provenance."
    ]
    partial = {"machine": {"cpu_count": 2}, "notes": ["Merged from three runs."]}
    lines = provenance.notes({"provenance": partial})
    assert lines[0].startswith("Provenance partial: no record of commit, command")
    assert lines[-1] == "Merged from three runs."


def test_merging_runs_with_different_configs_keeps_each_rows_config():
    parts = [{"provenance": {"config": {"epochs": 5}}}, {"provenance": {"config": {}}}]
    with pytest.raises(ValueError, match="different configs"):
        provenance.merge_rows([{"accuracy": 0.9}, {"accuracy": 0.8}], parts)
    rows = [{"accuracy": 0.9, "config": {"epochs": 5}}, {"config": {}}]
    assert provenance.merge_rows(rows, parts) == rows
    same = [{"provenance": {"config": {"a": 1}}}] * 2
    assert provenance.merge_rows([{"x": 1}], same) == [{"x": 1}]


def test_markdown_table_prints_the_sources_notes_under_it():
    rows = [{"a": 1}]
    assert report.markdown_table(rows, source={"provenance": {}}).endswith(
        "\n\n> Made before result files recorded their provenance."
    )
    assert report.markdown_table(rows) == "| a |\n|---|\n| 1 |"


@pytest.mark.parametrize(
    "path", sorted(report.results_dir().glob("*.json")), ids=lambda p: p.stem
)
def test_every_result_file_says_how_it_was_made(path):
    """A complete record, or a recovered one that names the commit it came in
    with and what it lacks; either way the chapter has notes to print."""
    result = json.loads(path.read_text())
    record = result["provenance"]
    if record.get("recovered"):
        assert len(record["committed_in"]) == 40 and record["notes"]
    else:
        assert not [f for f in provenance.FIELDS if not record.get(f)]
        assert None not in record["load_average"].values()
        assert isinstance(record["noisy"], bool)
    assert all(isinstance(n, str) and n for n in provenance.notes(result))


def test_mark_sources_names_the_run_of_every_row():
    mark_sources = provenance.mark_sources
    first = {"started_at": "2026-01-01T00:00:00Z", "config": {"a": 1}}
    mark_sources(first, None, ["x", "y"], [])
    assert "notes" not in first and "parts" not in first
    second = {"started_at": "2026-02-01T00:00:00Z", "config": {"a": 2}}
    mark_sources(second, first, ["y"], ["x"])
    assert second["rows_from"] == {
        "x": "the run started 2026-01-01T00:00:00Z",
        "y": "the run started 2026-02-01T00:00:00Z",
    }
    assert second["parts"] == [first]
    third = {"started_at": "2026-03-01T00:00:00Z", "config": {}}
    mark_sources(third, second, ["z"], ["x", "y"])
    assert third["rows_from"]["x"] == "the run started 2026-01-01T00:00:00Z"
    assert [p["started_at"] for p in third["parts"]] == [
        "2026-01-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
    ]
    assert third["notes"][0] == (
        "Merged from several runs, each row with its own config and measured_at: "
        "x from the run started 2026-01-01T00:00:00Z; y from the run started "
        "2026-02-01T00:00:00Z; z from the run started 2026-03-01T00:00:00Z."
    )
    fourth = {"started_at": "2026-04-01T00:00:00Z", "machine": {"cpu_count": 4}}
    mark_sources(fourth, {**third, "machine": {"cpu_count": 2}}, ["x"], ["y", "z"])
    assert fourth["notes"][-1] == (
        "Rows from the run started 2026-03-01T00:00:00Z ran on another machine or "
        "software (cpu_count 2); the file's machine is this run's."
    )
