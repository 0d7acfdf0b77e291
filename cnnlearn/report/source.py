"""Show the package's own code in a chapter, so the page cannot drift from it.

Chapters teach an algorithm and then run the package's implementation of it;
:func:`show_source` puts that implementation on the page (as d2l does), read
from the running code with :func:`inspect.getsource`.
"""

from __future__ import annotations

import inspect
import textwrap

__all__ = ["show_source"]


def show_source(*objects) -> str:
    """The source of each function, method or class, as one fenced Markdown block
    (a method dedented to the left margin).

    Returns Markdown text; a chapter shows it with
    ``IPython.display.Markdown(report.show_source(ops.conv2d_naive))``.
    """
    if not objects:
        raise ValueError("show_source needs at least one function or class")
    parts = [textwrap.dedent(inspect.getsource(obj)).rstrip() for obj in objects]
    return "```python\n" + "\n\n".join(parts) + "\n```"
