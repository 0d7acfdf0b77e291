"""cnnlearn.deploy.state and the multi-version ModelVersions: version policies,
labels, model config reloads, the gRPC source and the batching queues.

The versions are copies of one small LiteRT model (a plain Keras model
converted, no cnnlearn sidecar), so each test loads real backends quickly; the
``x-model-version`` header tells which version answered.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import build_plain
from fastapi.testclient import TestClient

from cnnlearn.deploy import server
from cnnlearn.deploy.backends import ModelVersions
from cnnlearn.deploy.batching import Batchers, BatchingParameters
from cnnlearn.deploy.modelconfig import ModelEntry
from cnnlearn.deploy.protocol import ServingError
from cnnlearn.deploy.state import (
    ServerMetrics,
    ServerState,
    StateSource,
    find_version,
    poll_models,
    run_model,
    version_status,
)

pytest.importorskip("tensorflow_serving", reason="needs tensorflow-serving-api")

HOUR = 3600 * 10**6


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return build_plain(tmp_path_factory.getbasetemp() / "plain-models")


def add_versions(plain, base: Path, *numbers: int) -> Path:
    """Copies of the plain LiteRT model as versions ``numbers`` of ``base``."""
    for number in numbers:
        (base / str(number)).mkdir(parents=True)
        shutil.copy(plain.tflite_base / "7" / "model.tflite", base / str(number))
    return base


def state_of(*managers: ModelVersions) -> ServerState:
    found = {m.name: m for m in managers}
    return ServerState(found, ServerMetrics(found))


def rows(state: ServerState, name: str, version: int | None = None) -> list:
    body = version_status(state, name, version)
    return [(r["version"], r["state"]) for r in body["model_version_status"]]


def config_text(*models: tuple[str, Path, str]) -> str:
    """A ModelServerConfig with ``(name, base_path, extra fields)`` models."""
    configs = "".join(
        f"config {{ name: '{name}' base_path: '{base}' model_platform: "
        f"'tensorflow' {extra} }} "
        for name, base, extra in models
    )
    return f"model_config_list {{ {configs}}}"


def test_the_default_policy_serves_the_latest_version_only(plain, tmp_path):
    manager = ModelVersions("m", add_versions(plain, tmp_path, 1, 2, 3))
    assert manager.poll() is True
    assert sorted(manager.loaded) == [3] and manager.current.version == 3
    assert manager.poll() is False  # nothing changed


@pytest.mark.parametrize(
    "policy, want",
    [
        (ModelEntry("m", Path("."), policy="latest", num_versions=2), [2, 3]),
        (ModelEntry("m", Path("."), policy="all"), [1, 2, 3]),
        (ModelEntry("m", Path("."), policy="specific", versions=(1, 3)), [1, 3]),
    ],
)
def test_each_policy_keeps_its_versions_loaded(plain, tmp_path, policy, want):
    base = add_versions(plain, tmp_path, 1, 2, 3)
    manager = ModelVersions("m", base, policy=policy)
    assert manager.poll() is True
    assert sorted(manager.loaded) == want
    assert manager.current.version == max(want)
    state = state_of(manager)
    assert rows(state, "m") == [(str(v), "AVAILABLE") for v in reversed(want)]
    for version in want:
        assert find_version(state, "m", version).version == version


def test_versions_leaving_the_policy_are_unloaded_and_listed_as_end(plain, tmp_path):
    base = add_versions(plain, tmp_path, 1, 2, 3)
    latest_two = ModelEntry("m", base, policy="latest", num_versions=2)
    manager = ModelVersions("m", base, policy=latest_two)
    manager.poll()
    add_versions(plain, base, 4)
    assert manager.poll() is True
    assert sorted(manager.loaded) == [3, 4] and manager.retired == {2}
    state = state_of(manager)
    assert rows(state, "m") == [("4", "AVAILABLE"), ("3", "AVAILABLE"), ("2", "END")]
    with pytest.raises(ServingError) as info:
        find_version(state, "m", 2)
    assert info.value.status == 404
    assert info.value.message == "Servable not found for request: Specific(m, 2)"
    manager.configure(ModelEntry("m", base, policy="specific", versions=(1,)))
    assert manager.poll() is True
    assert sorted(manager.loaded) == [1]
    assert rows(state, "m") == [
        ("4", "END"),
        ("3", "END"),
        ("2", "END"),
        ("1", "AVAILABLE"),
    ]


def test_a_pinned_version_is_a_specific_policy(plain, tmp_path):
    base = add_versions(plain, tmp_path, 1, 2)
    manager = ModelVersions("m", base, pinned=1)
    manager.poll()
    assert sorted(manager.loaded) == [1]
    manager.configure(ModelEntry("m", base, policy="all"))  # the pin still wins
    manager.poll()
    assert sorted(manager.loaded) == [1]


def test_a_broken_newest_version_leaves_the_next_one_down_serving(plain, tmp_path):
    base = add_versions(plain, tmp_path, 1, 2)
    (base / "3").mkdir()
    (base / "3" / "model.tflite").write_bytes(b"not a model")
    manager = ModelVersions(
        "m", base, policy=ModelEntry("m", base, policy="latest", num_versions=2)
    )
    assert manager.poll() is True
    assert sorted(manager.loaded) == [1, 2] and 3 in manager.failed
    assert rows(state_of(manager), "m") == [
        ("3", "END"),
        ("2", "AVAILABLE"),
        ("1", "AVAILABLE"),
    ]


def test_labels_name_loaded_versions(plain, tmp_path):
    base = add_versions(plain, tmp_path, 1, 2, 3)
    manager = ModelVersions("m", base, policy=ModelEntry("m", base, policy="all"))
    manager.poll()
    manager.version_labels = {"stable": 2}
    state = state_of(manager)
    assert find_version(state, "m", None, "stable").version == 2
    assert find_version(state, "m", None).version == 3  # Latest: the highest
    with pytest.raises(ServingError) as info:
        find_version(state, "m", None, "beta")
    assert (info.value.status, info.value.message) == (
        400,
        "Unrecognized servable version label: beta",
    )
    assert rows(state, "m", 2) == [("2", "AVAILABLE")]


def test_rest_routes_serve_every_loaded_version_and_label(plain, tmp_path):
    base = add_versions(plain, tmp_path / "m", 1, 2, 3)
    path = tmp_path / "models.config"
    labels = "version_labels { key: 'stable' value: 1 } "
    labels += "version_labels { key: 'canary' value: 2 }"
    path.write_text(
        config_text(("m", base, f"model_version_policy {{ all {{}} }} {labels}"))
    )
    app = server.create_app({}, "tflite", model_config_file=path)
    body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    with TestClient(app) as api:
        status = api.get("/v1/models/m").json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [
            ("3", "AVAILABLE"),
            ("2", "AVAILABLE"),
            ("1", "AVAILABLE"),
        ]
        for url, served in [
            ("/v1/models/m:predict", "3"),
            ("/v1/models/m/versions/1:predict", "1"),
            ("/v1/models/m/versions/2:predict", "2"),
            ("/v1/models/m/labels/stable:predict", "1"),
            ("/v1/models/m/labels/canary:predict", "2"),
        ]:
            response = api.post(url, json=body)
            assert response.status_code == 200, response.text
            assert response.headers["x-model-version"] == served
        meta = api.get("/v1/models/m/labels/canary/metadata").json()
        assert meta["model_spec"]["version"] == "2"
        assert api.get("/v1/models/m/labels/stable").json() == {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }


def test_a_config_reload_adds_removes_and_relabels_models(plain, tmp_path):
    a = add_versions(plain, tmp_path / "a", 1, 2)
    b = add_versions(plain, tmp_path / "b", 1)
    c = add_versions(plain, tmp_path / "c", 5)
    path = tmp_path / "models.config"
    path.write_text(config_text(("a", a, ""), ("b", b, "")))
    app = server.create_app(
        {}, "tflite", model_config_file=path, config_poll_seconds=60
    )
    state = app.state.server
    assert sorted(state.managers) == ["a", "b"]
    assert sorted(state.managers["a"].loaded) == [2]
    policy = "model_version_policy { specific { versions: 1 versions: 2 } }"
    label = "version_labels { key: 'stable' value: 1 }"
    path.write_text(config_text(("a", a, f"{policy} {label}"), ("c", c, "")))
    state.next_config_check = 0.0  # the wait is over
    poll_models(state)
    assert sorted(state.managers) == ["a", "c"]
    assert sorted(state.managers["a"].loaded) == [1, 2]
    assert state.managers["a"].version_labels == {"stable": 1}
    api = TestClient(app)  # no lifespan: no background polls meanwhile
    body = {"instances": [[0.5, 0.5, 0.5, 0.5]]}
    stable = api.post("/v1/models/a/labels/stable:predict", json=body)
    assert stable.headers["x-model-version"] == "1"
    assert api.post("/v1/models/c:predict", json=body).status_code == 200
    gone = api.post("/v1/models/b:predict", json=body)
    assert gone.status_code == 404
    assert states(api, "b") == [("1", "END")]  # as TF Serving lists it
    assert api.get("/monitoring/prometheus/metrics").status_code == 200


def states(api, name: str) -> list[tuple[str, str]]:
    rows_ = api.get(f"/v1/models/{name}").json()["model_version_status"]
    return [(r["version"], r["state"]) for r in rows_]


def test_a_bad_new_config_is_logged_and_the_old_one_keeps_serving(
    plain, tmp_path, caplog
):
    a = add_versions(plain, tmp_path / "a", 1, 2)
    path = tmp_path / "models.config"
    path.write_text(config_text(("a", a, "")))
    app = server.create_app({}, "tflite", model_config_file=path, config_poll_seconds=1)
    state = app.state.server
    with caplog.at_level(logging.ERROR, logger="cnnlearn.deploy"):
        path.write_text("improperly formatted file")
        state.next_config_check = 0.0
        poll_models(state)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "Error parsing text-format" in errors[0]
    assert sorted(state.managers) == ["a"] and state.managers["a"].current.version == 2
    # A label on a version the policy does not load: the models are served,
    # the label is not set, and the file is tried again at the next check.
    path.write_text(config_text(("a", a, "version_labels { key: 'old' value: 1 }")))
    state.next_config_check = 0.0
    poll_models(state)
    assert state.managers["a"].version_labels == {}
    assert "not currently available" in state.watcher.last_error
    path.write_text(
        config_text(
            (
                "a",
                a,
                "model_version_policy { all {} } "
                "version_labels { key: 'old' value: 1 }",
            )
        )
    )
    state.next_config_check = 0.0
    poll_models(state)
    assert state.managers["a"].version_labels == {"old": 1}
    assert state.watcher.last_error is None


def test_a_bad_config_at_start_is_refused_in_one_line(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("improperly formatted file")
    with pytest.raises(ValueError, match="Error parsing text-format") as info:
        server.create_app({}, "tflite", model_config_file=path)
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="model config file not found"):
        server.create_app({}, "tflite", model_config_file=tmp_path / "missing")
    with pytest.raises(ValueError, match="got both"):
        server.create_app({"m": tmp_path}, "tflite", model_config_file=path)


def test_the_grpc_source_answers_from_the_same_versions(plain, tmp_path):
    base = add_versions(plain, tmp_path, 1, 2)
    manager = ModelVersions("m", base, policy=ModelEntry("m", base, policy="all"))
    manager.poll()
    state = state_of(manager)
    source = StateSource(state)
    assert source.find("m", None, None) is manager.loaded[2]
    assert source.find("m", 1, None) is manager.loaded[1]
    assert source.status("m") == version_status(state, "m", None)
    with pytest.raises(ServingError) as info:
        source.find("nope", None, None)
    assert info.value.status == 404  # NOT_FOUND over gRPC


def test_unloaded_versions_lose_their_batching_queue(plain, tmp_path):
    base = add_versions(plain, tmp_path, 1, 2)
    manager = ModelVersions("m", base, policy=ModelEntry("m", base, policy="all"))
    manager.poll()
    state = state_of(manager)
    state.batchers = Batchers(BatchingParameters(max_batch_size=4))
    try:
        old = manager.loaded[1]
        x = np.zeros((1, 4), np.float32)
        (name,) = old.signatures["serving_default"].inputs
        out = run_model(state, "m", old, "serving_default", {name: x})
        assert next(iter(out.values())).shape == (1, 3)
        assert state.batchers.get("m", old) is not None
        manager.configure(ModelEntry("m", base))  # latest: version 1 leaves
        poll_models(state)
        assert sorted(manager.loaded) == [2]
        assert state.batchers.get("m", old) is None  # retired, closed
    finally:
        state.batchers.close()


def test_names_that_moved_stay_importable_from_the_server_module():
    from cnnlearn.deploy import state, transport

    for module in (state, transport):
        for name in module.__all__:
            if name in server.__all__:
                assert getattr(server, name) is getattr(module, name), name
    for name in ("ServerState", "find_version", "version_status", "GuardedProtocol"):
        assert name in server.__all__
    assert server.server_config is transport.server_config
    assert server.MAX_HEADER_BYTES == transport.MAX_HEADER_BYTES
