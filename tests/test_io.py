from __future__ import annotations

import json

import pytest

from cnnlearn._io import atomic_path, check_output_dir, find_upward, write_json


def test_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": "ü"})
    assert json.loads(path.read_text()) == {"b": "ü"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_find_upward_looks_from_the_start_directory_up(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    deep = tmp_path / "book" / "runs"
    deep.mkdir(parents=True)
    found = find_upward("benchmarks/results", deep)
    assert found == tmp_path.resolve() / "benchmarks" / "results"
    assert find_upward("no/such/thing", deep) is None


def test_check_output_dir_refuses_a_file(tmp_path):
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output_dir(tmp_path / "f")
