"""cnnlearn.deploy.modelconfig: TF Serving's ``--model_config_file``.

The configs are TF Serving's own: the examples of ``serving_config.md`` and the
files of ``tensorflow_model_server_test.py`` (``good_model_config.txt``,
``bad_model_config.txt``, ``testModelConfigReload``), parsed with the real
``ModelServerConfig`` proto.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("tensorflow_serving", reason="needs tensorflow-serving-api")

from cnnlearn.deploy.modelconfig import (  # noqa: E402
    ConfigWatcher,
    ModelEntry,
    check_labels,
    parse_config,
    read_config,
    resolve_label,
    select_versions,
)

# serving_config.md: two models, a canary and a stable label.
DOCS = """
model_config_list {
  config {
    name: 'my_first_model'
    base_path: '%(a)s'
    model_platform: 'tensorflow'
  }
  config {
    name: 'my_second_model'
    base_path: '%(b)s'
    model_platform: 'tensorflow'
    model_version_policy {
      specific {
        versions: 42
        versions: 43
      }
    }
    version_labels {
      key: 'stable'
      value: 42
    }
    version_labels {
      key: 'canary'
      value: 43
    }
  }
}
"""

# tensorflow_model_server_test.py's testdata/good_model_config.txt (colons and
# commas: the text format allows both).
GOOD = """model_config_list: {
  config: {
    name: "half_plus_two",
    base_path: "%(a)s",
    model_platform: "tensorflow"
  },
  config: {
    name: "half_plus_three",
    base_path: "%(b)s",
    model_platform: "tensorflow"
  }
}"""


def one(name: str, base: Path, body: str = "") -> str:
    return (
        f"model_config_list {{ config {{ name: '{name}' base_path: '{base}' "
        f"model_platform: 'tensorflow' {body} }} }}"
    )


@pytest.fixture
def dirs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return {"a": str(a), "b": str(b)}


def test_the_docs_example_with_policies_and_labels(dirs):
    first, second = parse_config(DOCS % dirs)
    assert first == ModelEntry("my_first_model", Path(dirs["a"]))
    assert first.policy == "latest" and first.num_versions == 1  # the default
    assert second.name == "my_second_model"
    assert second.base_path == Path(dirs["b"])
    assert (second.policy, second.versions) == ("specific", (42, 43))
    assert second.labels == {"stable": 42, "canary": 43}


def test_tf_servings_good_model_config_file(dirs, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(GOOD % dirs)
    models = read_config(path)
    assert [m.name for m in models] == ["half_plus_two", "half_plus_three"]
    assert [m.platform for m in models] == ["tensorflow", "tensorflow"]


def test_tf_servings_bad_model_config_file_fails_as_there(tmp_path):
    path = tmp_path / "bad.config"
    path.write_text("improperly formatted file")
    with pytest.raises(ValueError) as info:
        read_config(path)
    message = str(info.value)
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in message
    assert message.startswith(str(path))
    assert "\n" not in message


@pytest.mark.parametrize(
    "body, policy, num, versions",
    [
        ("", "latest", 1, ()),
        ("model_version_policy { latest { num_versions: 2 } }", "latest", 2, ()),
        ("model_version_policy { latest { num_versions: 0 } }", "latest", 1, ()),
        ("model_version_policy { all {} }", "all", 1, ()),
        ("model_version_policy { specific { versions: 3 } }", "specific", 1, (3,)),
    ],
)
def test_version_policies(tmp_path, body, policy, num, versions):
    (entry,) = parse_config(one("m", tmp_path, body))
    assert (entry.policy, entry.num_versions, entry.versions) == (policy, num, versions)


def test_an_unknown_policy_is_one_line_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r'no field named "newest"') as info:
        parse_config(one("m", tmp_path, "model_version_policy { newest {} }"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, error, message",
    [
        (
            "model_config_list { config { name: 'm' base_path: '%(a)s' "
            "model_platform: 'tensorflow' } config { name: 'm' base_path: '%(b)s' "
            "model_platform: 'tensorflow' } }",
            ValueError,
            "Illegal to list model m multiple times in config list",
        ),
        (
            "model_config_list { config { name: 'm' model_platform: 'tensorflow' } }",
            ValueError,
            r"Expected model m to have an absolute path or URI; got base_path\(\)=$",
        ),
        (
            "model_config_list { config { name: 'm' base_path: 'rel/m' "
            "model_platform: 'tensorflow' } }",
            ValueError,
            r"got base_path\(\)=rel/m",
        ),
        (
            "model_config_list { config { name: 'm' base_path: '%(a)s/nope' "
            "model_platform: 'tensorflow' } }",
            FileNotFoundError,
            "Could not find base path .*/nope for servable m",
        ),
        (
            "model_config_list { config { name: 'm' base_path: '%(a)s' } }",
            ValueError,
            "Illegal setting neither ModelServerConfig::model_type",
        ),
        (
            "model_config_list { config { name: 'm' base_path: '%(a)s' "
            "model_platform: 'pytorch' } }",
            ValueError,
            "Model m requests unsupported platform pytorch",
        ),
        (
            "model_config_list { config { base_path: '%(a)s' "
            "model_platform: 'tensorflow' } }",
            ValueError,
            "a model config has no name",
        ),
        (
            "model_config_list { config { name: 'm' base_path: '%(a)s' "
            "model_platform: 'tensorflow' model_version_policy { specific {} } } }",
            ValueError,
            "specific lists no versions",
        ),
        (
            "model_config_list { config { name: 'm' base_path: '%(a)s' "
            "model_platform: 'tensorflow' model_version_policy { specific "
            "{ versions: 1 } } version_labels { key: 'canary' value: 2 } } }",
            ValueError,
            "label 'canary' names version 2, which the specific policy",
        ),
        (
            "custom_model_config { type_url: 'x' }",
            ValueError,
            "custom_model_config is not supported",
        ),
    ],
    ids=[
        "duplicate",
        "no-base-path",
        "relative",
        "missing-dir",
        "no-platform",
        "platform",
        "no-name",
        "empty-specific",
        "label",
        "custom",
    ],
)
def test_invalid_configs_are_refused_in_one_line(dirs, text, error, message):
    with pytest.raises(error, match=message) as info:
        parse_config(text % dirs, source="models.config")
    assert str(info.value).startswith("models.config: ")
    assert "\n" not in str(info.value)


def test_relative_base_paths_with_a_root_dir(tmp_path):
    (tmp_path / "m").mkdir()
    (entry,) = parse_config(one("m", Path("m")), root_dir=tmp_path)
    assert entry.base_path == tmp_path / "m"


def test_a_missing_base_path_may_be_allowed(tmp_path):
    (entry,) = parse_config(one("m", tmp_path / "later"), check_paths=False)
    assert entry.base_path == tmp_path / "later"


def test_select_versions_applies_each_policy(caplog):
    on_disk = [1, 2, 5, 7]
    base = Path("/m")
    assert select_versions(ModelEntry("m", base), on_disk) == [7]
    assert select_versions(ModelEntry("m", base, num_versions=3), on_disk) == [2, 5, 7]
    assert select_versions(ModelEntry("m", base, policy="all"), on_disk) == on_disk
    assert select_versions(ModelEntry("m", base), []) == []
    specific = ModelEntry("m", base, policy="specific", versions=(2, 3))
    with caplog.at_level(logging.WARNING, logger="cnnlearn.deploy"):
        assert select_versions(specific, on_disk) == [2]
    assert "Version 3 of servable m" in caplog.text
    assert "was not found in the file system" in caplog.text


def test_labels_follow_tf_servings_rules():
    entry = ModelEntry("m", Path("/m"), labels={"stable": 42, "canary": 43})
    assert check_labels(entry, [42, 43]) == {"stable": 42, "canary": 43}
    with pytest.raises(
        ValueError, match="label to version 43 of model m, which is not"
    ):
        check_labels(entry, [42])
    # a new label may name a version still loading when allowed...
    assert check_labels(entry, [42], allow_unavailable=True)["canary"] == 43
    # ...but moving one onto such a version is refused even then
    with pytest.raises(ValueError, match="version 43"):
        check_labels(entry, [42], current={"canary": 42}, allow_unavailable=True)
    labels = {"m": {"stable": 42}}
    assert resolve_label(labels, "m", "stable") == 42
    with pytest.raises(ValueError, match="^Unrecognized servable version label: beta$"):
        resolve_label(labels, "m", "beta")
    with pytest.raises(ValueError, match="Unrecognized servable version label"):
        resolve_label(labels, "other", "stable")


def test_the_watcher_applies_changes_and_keeps_the_config_on_a_bad_file(
    tmp_path, dirs, caplog
):
    # tensorflow_model_server_test.py's testModelConfigReload: half_plus_two,
    # then the file rewritten to serve half_plus_three instead.
    path = tmp_path / "models.config"
    path.write_text(one("half_plus_two", dirs["a"]))
    applied = []
    watcher = ConfigWatcher(path, applied.append)
    assert watcher.check() is True
    assert watcher.check() is False  # unchanged: not applied again
    path.write_text(one("half_plus_three", dirs["b"]))
    assert watcher.check() is True
    assert [[m.name for m in models] for models in applied] == [
        ["half_plus_two"],
        ["half_plus_three"],
    ]
    with caplog.at_level(logging.ERROR, logger="cnnlearn.deploy"):
        path.write_text("improperly formatted file")
        assert watcher.check() is False
        assert watcher.check() is False
    assert [m.name for m in watcher.models] == ["half_plus_three"]  # kept
    assert watcher.errors == 1  # logged once while the error stays the same
    assert caplog.text.count("Error parsing text-format") == 1
    path.unlink()
    assert watcher.check() is False
    assert watcher.errors == 2
    assert len(applied) == 2


def test_a_config_that_fails_to_apply_is_tried_again(tmp_path, dirs):
    path = tmp_path / "models.config"
    path.write_text(one("m", dirs["a"]))
    calls = []

    def apply(models):
        calls.append(models)
        if len(calls) == 1:
            raise RuntimeError("model m failed to load")

    watcher = ConfigWatcher(path, apply)
    assert watcher.check() is False
    assert watcher.models is None
    assert watcher.check() is True  # same file, tried again, now applied
    assert len(calls) == 2


def test_a_base_path_created_later_is_picked_up(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(one("m", tmp_path / "later"))
    applied = []
    watcher = ConfigWatcher(path, applied.append)
    assert watcher.check() is False
    (tmp_path / "later").mkdir()
    assert watcher.check() is True
    assert applied[0][0].base_path == tmp_path / "later"


def test_the_poll_thread_reloads_on_change(tmp_path, dirs):
    path = tmp_path / "models.config"
    path.write_text(one("first", dirs["a"]))
    seen = []
    changed = threading.Event()

    def apply(models):
        seen.append(models[0].name)
        if models[0].name == "second":
            changed.set()

    watcher = ConfigWatcher(path, apply, poll_wait_seconds=0.02)
    watcher.check()
    watcher.start()
    try:
        path.write_text(one("second", dirs["b"]))
        assert watcher.polling
        assert changed.wait(60)
    finally:
        watcher.stop()
    assert seen == ["first", "second"]


def test_no_poll_thread_without_a_positive_wait(tmp_path, dirs):
    path = tmp_path / "models.config"
    path.write_text(one("m", dirs["a"]))
    watcher = ConfigWatcher(path, lambda models: None, poll_wait_seconds=0)
    watcher.start()
    assert not watcher.polling
    watcher.stop()


def test_a_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model config file not found"):
        read_config(tmp_path / "nope.config")


def test_reading_a_config_never_imports_tensorflow(tmp_path, dirs):
    path = tmp_path / "models.config"
    path.write_text(DOCS % dirs)
    code = f"""
import sys
from cnnlearn.deploy import modelconfig
assert len(modelconfig.read_config({str(path)!r})) == 2
print("tensorflow" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_poller_may_select_specific_versions_without_a_warning(caplog):
    specific = ModelEntry("m", Path("/m"), policy="specific", versions=(2, 3))
    with caplog.at_level(logging.WARNING, logger="cnnlearn.deploy"):
        assert select_versions(specific, [1, 2], warn=False) == [2]
    assert "was not found" not in caplog.text


def test_the_watcher_says_why_the_last_check_applied_nothing(tmp_path, dirs):
    path = tmp_path / "models.config"
    path.write_text(one("m", dirs["a"]))
    watcher = ConfigWatcher(path, lambda models: None)
    assert watcher.check() is True and watcher.last_error is None
    path.write_text("improperly formatted file")
    assert watcher.check() is False
    assert "Error parsing text-format" in watcher.last_error
    assert "\n" not in watcher.last_error
    path.write_text(one("m", dirs["b"]))
    assert watcher.check() is True and watcher.last_error is None
