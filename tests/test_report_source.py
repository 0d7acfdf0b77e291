from __future__ import annotations

import inspect

import pytest

from cnnlearn.config import RunData, load_data
from cnnlearn.report import show_source


def test_show_source_is_the_running_code_in_one_fenced_block():
    text = show_source(load_data, RunData)
    assert text.startswith("```python\n") and text.endswith("\n```")
    assert inspect.getsource(load_data).rstrip() in text
    assert text.count("```") == 2 and "class RunData" in text


def test_show_source_needs_something_to_show():
    with pytest.raises(ValueError, match="at least one"):
        show_source()


def test_a_method_is_dedented():
    class Box:
        def size(self) -> int:
            return 1

    assert show_source(Box.size).startswith("```python\ndef size(self)")
