"""The claims ledger (论断核查表): every claim of the article, its verdict, its proof.

The ledger is ``book/claims.yml``: one entry per claim of the source article,
with the article's section, its words, the verdict (``holds``, ``corrected``,
``refuted`` or ``not testable``) and the evidence. Evidence is read, never
typed: a value from a ``benchmarks/results`` file or glued by a chapter, compared
with the article's claim written as a predicate (``expect: ">= 0.975"``), or a
chapter cell whose output shows the correction. :func:`check` says where a
verdict lacks evidence or its evidence contradicts it; the test suite runs it on
every entry, and chapter 10 renders :func:`ledger_table`.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from pathlib import Path

import yaml

from cnnlearn.book import book_dir
from cnnlearn.report.benchmarks import results_dir as find_results

__all__ = ["VERDICTS", "check", "evaluate", "ledger_table", "load_claims"]

VERDICTS = ("holds", "corrected", "refuted", "not testable")
OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
PREDICATE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
GLUE_MIME = "application/papermill.record/text/plain"


def load_claims(path: str | Path | None = None) -> list[dict]:
    """The ledger's entries, in order (``book/claims.yml`` by default)."""
    path = Path(path) if path is not None else book_dir() / "claims.yml"
    claims = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(claims, list):
        raise ValueError(f"{path}: expected a list of claims")
    return claims


def _result(name: str, results_dir: Path | None) -> dict:
    directory = find_results(results_dir)
    if directory is None:
        raise FileNotFoundError("no benchmarks/results folder here or above")
    return json.loads((directory / f"{name}.json").read_text())


def _chapter(chapter: str, book: Path | None) -> dict:
    (path,) = book_dir(book).glob(f"{chapter}_*.ipynb")
    return json.loads(path.read_text(encoding="utf-8"))


def _glued(nb: dict, name: str):
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            scrap = out.get("metadata", {}).get("scrapbook", {})
            if scrap.get("name") == name and GLUE_MIME in out.get("data", {}):
                text = out["data"][GLUE_MIME]
                text = "".join(text) if isinstance(text, list) else text
                try:
                    return ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    return text.strip("'\"")
    raise KeyError(f"no value glued as {name!r}")


def _cell_text(nb: dict, cell_id: str) -> tuple[str, dict]:
    for cell in nb["cells"]:
        if cell.get("id") == cell_id:
            parts = []
            for out in cell.get("outputs", []):
                text = out.get("text") or "".join(
                    "".join(v) if isinstance(v, list) else str(v)
                    for k, v in out.get("data", {}).items()
                    if k.startswith("text/")
                )
                parts.append("".join(text) if isinstance(text, list) else text)
            return "\n".join(parts), cell
    raise KeyError(f"no cell with id {cell_id!r}")


def _lookup(result: dict, key: list):
    """Follow ``key`` into ``result``; a dict part picks the first list item
    whose fields equal it (``{method: int8, seed: 0}`` among rows)."""
    value = result
    for part in key:
        if isinstance(part, dict):
            matches = [v for v in value if all(v.get(k) == w for k, w in part.items())]
            if not matches:
                raise KeyError(f"no item with {part}")
            value = matches[0]
        else:
            value = value[part]
    return value


def evaluate(evidence: dict, book: Path | None = None, results_dir: Path | None = None):
    """Resolve one piece of evidence.

    Returns ``(value, holds)``: the value read (a number from a result file or a
    glue, or a cell's output text) and whether the article's predicate
    ``expect`` holds for it (``None`` when there is no predicate). A cell's
    evidence must show its ``shows`` text, or :class:`ValueError` is raised.
    """
    if "result" in evidence:
        result = _result(evidence["result"], results_dir)
        value = _lookup(result, evidence["key"])
        other = result
    elif "glue" in evidence:
        nb = _chapter(evidence["chapter"], book)
        value, other = _glued(nb, evidence["glue"]), None
    elif "cell" in evidence:
        nb = _chapter(evidence["chapter"], book)
        value, cell = _cell_text(nb, evidence["cell"])
        if "nbval-check-output" not in cell.get("metadata", {}).get("tags", []):
            raise ValueError(f"cell {evidence['cell']} is not compared by nbval")
        if evidence.get("shows", "") not in value or not value:
            raise ValueError(f"cell {evidence['cell']} does not show the evidence")
        return value, None
    else:
        raise ValueError(f"evidence names no result, glue or cell: {evidence}")
    if "expect" not in evidence:
        return value, None
    op, bound = _predicate(evidence["expect"], other)
    return value, OPERATORS[op](value, bound)


def _predicate(expect: str, result: dict | None) -> tuple[str, float]:
    """``">= 0.975"`` -> ``(">=", 0.975)``; the bound may be a key of ``result``."""
    match = PREDICATE.match(str(expect))
    if not match:
        raise ValueError(f"bad predicate {expect!r}: e.g. '>= 0.975'")
    op, right = match.groups()
    try:
        return op, float(right)
    except ValueError:  # another key of the same result file
        if result is None:
            raise ValueError(f"{right!r}: a glue compares with numbers only") from None
        return op, _lookup(result, json.loads(right))


def check(
    claim: dict, book: Path | None = None, results_dir: Path | None = None
) -> list:
    """What is wrong with one ledger entry: empty when its evidence backs it.

    ``holds`` needs every predicate true, ``refuted`` at least one false (or,
    without predicates, a cell that shows the contrary);
    ``holds``, ``refuted`` and ``corrected`` need evidence that resolves;
    ``not testable`` needs a ``why``.
    """
    problems = []
    for field in ("id", "section", "claim", "verdict", "chapter"):
        if not claim.get(field):
            problems.append(f"no {field}")
    verdict = claim.get("verdict")
    if verdict not in VERDICTS:
        return problems + [f"verdict {verdict!r} is not one of {VERDICTS}"]
    evidence = claim.get("evidence") or []
    if verdict == "not testable":
        return problems + ([] if claim.get("why") else ["not testable: say why"])
    if not evidence:
        return problems + [f"{verdict}: no evidence"]
    outcomes = []
    for item in evidence:
        try:
            outcomes.append(evaluate(item, book, results_dir)[1])
        except (KeyError, ValueError, IndexError, FileNotFoundError) as error:
            problems.append(f"evidence {item}: {error}")
    tested = [o for o in outcomes if o is not None]
    if verdict == "holds" and (not tested or not all(tested)):
        problems.append("holds: every predicate must be true, and there must be one")
    shown = any("cell" in item for item in evidence)
    if verdict == "refuted" and (all(tested) if tested else not shown):
        problems.append("refuted: no predicate of the claim fails on the evidence")
    return problems


def _show(item: dict, book: Path | None, results_dir: Path | None) -> str:
    """One piece of evidence as the ledger table shows it."""
    value, _ = evaluate(item, book, results_dir)
    if "cell" in item:  # the output line that shows the correction
        line = next(t for t in value.splitlines() if item.get("shows", "") in t)
        words = " ".join(line.replace("|", " ").split())  # a table row: its cells
        shown = words if len(words) <= 90 else f"… {item['shows']} …"
        return f"ch. {item['chapter']}: {shown}"
    where = item["result"] if "result" in item else f"ch. {item['chapter']}"
    where = f"{where}, {item['label']}" if "label" in item else where
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    if "expect" in item:
        result = None
        if "result" in item:
            result = _result(item["result"], results_dir)
        op, bound = _predicate(item["expect"], result)
        text += f" (the article: {op} {bound:.6g})"
    return f"{where}: {text}"


def ledger_table(
    claims: list[dict] | None = None,
    book: Path | None = None,
    results_dir: Path | None = None,
) -> list[dict]:
    """One row per claim for chapter 10: the article's words, verdict, evidence."""
    return [
        {
            "article (原文)": claim.get("quote") or claim["claim"],
            "section": claim["section"],
            "verdict": claim["verdict"],
            "why": claim.get("why", ""),
            "evidence": "; ".join(
                _show(item, book, results_dir) for item in claim.get("evidence") or []
            )
            or "—",
        }
        for claim in (claims if claims is not None else load_claims())
    ]
