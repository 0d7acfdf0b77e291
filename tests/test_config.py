from __future__ import annotations

import numpy as np
import pytest

from cnnlearn import data
from cnnlearn.config import RunConfig, load_data


def test_defaults_and_resolved_take_the_models_spec():
    config = RunConfig()
    assert (config.model, config.dataset, config.epochs) == ("seed", "mnist", None)
    resolved = RunConfig(model="strong", batch_size=64).resolved()
    assert resolved.batch_size == 64 and resolved.epochs >= 1
    assert config.replace(seed=3).seed == 3 and config.seed == 0
    with pytest.raises(ValueError, match="unknown model"):
        RunConfig(model="resnet").resolved()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"data_fraction": 0.0}, "data_fraction"),
        ({"data_fraction": 1.5}, "data_fraction"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
    ],
)
def test_bad_values_are_refused_with_their_name(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**changes)


def test_to_dict_is_json_ready(tmp_path):
    values = RunConfig(data_dir=tmp_path, plan={"precision": "float32"}).to_dict()
    assert values["data_dir"] == str(tmp_path) and values["plan"]["precision"]


def test_load_data_is_the_one_load_sequence(data_dir, mnist):
    config = RunConfig(data_dir=data_dir, data_fraction=0.05, seed=1)
    got = load_data(config)
    (x_train, y_train), _ = mnist
    x_part, y_part = data.take_fraction(x_train, y_train, 0.05, 1)
    np.testing.assert_array_equal(got.x_train, data.preprocess_images(x_part))
    np.testing.assert_array_equal(got.y_train, y_part)
    assert got.x_test.shape == (10000, 28, 28, 1) and got.x_test.dtype == np.float32
    assert got.class_names == data.CLASS_NAMES["mnist"] and len(got.y_test) == 10000
