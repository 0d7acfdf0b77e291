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
    "path", sorted(report.RESULTS_DIR.glob("*.json")), ids=lambda p: p.stem
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
