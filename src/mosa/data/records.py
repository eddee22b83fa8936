"""The record every loader returns, and the one place where rows are dropped (always with a warning).

Dropping rules, shared by all loaders:

- a row whose prompt is empty (or only whitespace) is dropped;
- a row identical to an earlier one in everything but its position (prompt, target, category and
  meta) is a duplicate row and is dropped when the loader dedupes: user files always, published
  benchmarks only with `dedupe=True`, because their published sizes count their own repeats
  (MMLU's 14,042 questions include 27 repeated rows, Do-Not-Answer's 939 one);
- two rows with the same id must be the same row: an identical repeat is dropped as a duplicate
  whatever `dedupe` says (ids must be unique), a different row under the same id is an error.

Every drop is reported by one `MosaDataWarning` per file that gives the counts and the first row
numbers, so nothing disappears silently; `mosa data` prints these as `mosa: warning: ...` lines.
"""

from __future__ import annotations

import json
import unicodedata
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from mosa.errors import MosaError, MosaWarning


class MosaDataWarning(MosaWarning):
    """Rows were dropped from a data file (empty prompt, duplicate, stray header); the message counts them."""


@dataclass(frozen=True)
class Example:
    """One prompt to give a model, with what is known about it.

    id: stable across runs and independent of the other rows where the source has its own key
        (HarmBench BehaviorID, HumanEval task_id, GSM8K id); else `source/row`, the 0-based row of
        the file counted before anything is dropped, so dropping a row never renumbers the others.
    prompt: the text to give the model (layouts per benchmark: docs/data.md).
    target: the reference answer where the benchmark has one (GSM8K answer, MMLU letter,
        AdvBench target string, HumanEval canonical solution), else None.
    meta: everything else worth keeping (MMLU choices and subject, HumanEval test and entry point,
        HarmBench functional category and tags, the other columns of a generic file).
    """

    id: str
    prompt: str
    source: str
    category: str | None = None
    target: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalise_prompt(text: str) -> str:
    """The form two prompts are compared in: Unicode NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass
class Row:
    """A candidate record and where it came from, for messages ("row 7", "line 12")."""

    where: str
    example: Example


def finalise(rows: list[Row], path: object, *, dedupe: bool, stray_headers: list[str] | None = None) -> list[Example]:
    """Drop empty prompts and duplicate rows, with one warning that counts them; return the rest.

    `stray_headers` lists the places of header rows the loader already removed (MMLU has two),
    so they are counted in the same warning.
    """
    empty: list[str] = []
    duplicate: list[str] = []
    kept: list[Example] = []
    by_id: dict[str, Row] = {}
    seen_content: set[str] = set()
    for row in rows:
        example = row.example
        if not example.prompt.strip():
            empty.append(row.where)
            continue
        first = by_id.get(example.id)
        if first is not None:
            if _content_key(first.example) != _content_key(example):
                raise MosaError(
                    f"{path}: id {example.id!r} is used by {first.where} and by {row.where} with different "
                    f"content; ids must be unique, fix or remove one of the two rows"
                )
            duplicate.append(row.where)
            continue
        if dedupe:  # only then is every row's content compared (MMLU: 14k rows)
            content = _content_key(example)
            if content in seen_content:
                duplicate.append(row.where)
                continue
            seen_content.add(content)
        by_id[example.id] = row
        kept.append(example)

    parts = []
    if stray_headers:
        parts.append(_count("stray header row", stray_headers))
    if empty:
        parts.append(_count("row with an empty prompt", empty))
    if duplicate:
        parts.append(_count("duplicate row", duplicate))
    if parts:
        warnings.warn(f"{path}: dropped {'; '.join(parts)}", MosaDataWarning, stacklevel=3)
    if not kept:
        raise MosaError(f"{path}: no rows left with a non-empty prompt ({len(rows)} read); check the prompt column")
    return kept


def _content_key(example: Example) -> str:
    """Everything but the id: two rows with the same key are the same row repeated."""
    return json.dumps([example.prompt, example.target, example.category, example.meta], sort_keys=True, default=str)


def _count(what: str, places: list[str]) -> str:
    plural = what if len(places) == 1 else what.replace("row", "rows", 1)
    shown = ", ".join(places[:5]) + (", ..." if len(places) > 5 else "")
    return f"{len(places)} {plural} ({shown})"
