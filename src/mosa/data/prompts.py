"""Prompt sets named by one spec string, the same way for `mosa align`, `mosa eval` and `mosa analyze`.

    resolve_prompts("advbench+harmbench")                           # both benchmarks, whole
    resolve_prompts("strongreject+donotanswer~advbench:train")      # the training side, AdvBench's texts removed
    resolve_prompts("organism-held-out", model="organism")          # a model's own prompt source

Grammar:

    spec  := term (("+" | "~") term)* [":" part]
    term  := a named dataset (mosa.data.DATASETS), a CSV/JSONL file, or a prompt source (PROMPT_SOURCES)
    part  := all | train | eval                                      (default: all)

`+` adds a source's prompts. `~` removes every prompt so far whose normalised text (NFKC,
case-folded, whitespace collapsed) occurs in that source: the same behaviour often appears in
several benchmarks (StrongREJECT holds 25 of AdvBench's goals), so only texts tell them apart.
`:train` and `:eval` then take one side of `split_examples(eval_fraction=0.2, seed=0)` of what
remains; without a part the set is whole.

Prompt sources are a model's own prompt sets, which a plug-in registers (mosa.plugins): they take
the model the prompts are for and no part. The organism's are its own split, decided when it was
built: `organism-train` (the harmful prompts it trained on), `organism-held-out` (those it never
saw) and `organism-utility` (its benign utility questions).

A `PromptSet` keeps the examples and a JSON record of how they were resolved (the spec, each
source's file and rows, the split rule and seed, and every prompt's id and text hash), which every
run writes beside its results; two records are compared through their text hashes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from mosa.data.records import Example, normalise_prompt
from mosa.data.registry import DATASETS, load_dataset, locate
from mosa.data.splits import split_examples
from mosa.errors import MosaError
from mosa.registry import Registry

PARTS = ("all", "train", "eval")
# The one split rule of named prompt sets: mosa align's rule since the first release, so that a
# `:train` set and its `:eval` set never share a prompt text.
EVAL_FRACTION = 0.2
SPLIT_SEED = 0
SPLIT_RULE = (
    "an example is for evaluation when sha256(f'{seed}\\0{id}') read as a number in [0, 1) is below "
    "eval_fraction; identical normalised texts are kept on one side (the training side unless all hashed to eval)"
)
HASH_DIGITS = 16  # 64 bits of sha256: no collision to fear among a few thousand prompts


# A model's own prompt sets, by name: called with the model the prompts are for (a name or a checkpoint
# directory; None when none is given), an entry returns the examples and a record of what they are.
PROMPT_SOURCES: Registry[Callable[[str | None], tuple[list[Example], dict]]] = Registry("prompt source")


def prompt_hash(text: str) -> str:
    """The hash two prompts are compared by: sha256 of the normalised text, first 16 hex digits."""
    return hashlib.sha256(normalise_prompt(text).encode()).hexdigest()[:HASH_DIGITS]


@dataclass(frozen=True)
class PromptSet:
    """Resolved prompts, in order, and how they were resolved. Iterating gives the examples."""

    spec: str | None  # None: prompts given directly, not named by a spec
    examples: tuple[Example, ...]
    part: str = "all"
    sources: tuple[dict, ...] = ()  # {"term", "op": "+" or "~", "rows", and "file" or "organism"}
    removed: int = 0  # prompts the "~" terms took out
    limit: int | None = None

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def prompts(self) -> list[str]:
        return [example.prompt for example in self.examples]

    def head(self, limit: int | None) -> PromptSet:
        """The first `limit` prompts (all of them for None), recorded as such."""
        if limit is None or limit >= len(self.examples):
            return self
        return replace(self, examples=self.examples[:limit], limit=limit)

    def record(self, texts: bool = False) -> dict:
        """JSON: what the set is and how it was made; `texts` adds each prompt's text."""
        rows = [
            {"id": e.id, "text_hash": prompt_hash(e.prompt), **({"prompt": e.prompt} if texts else {})} for e in self.examples
        ]
        digest = hashlib.sha256("".join(f"{row['id']}\0{row['text_hash']}\n" for row in rows).encode()).hexdigest()
        split = None
        if self.part != "all":
            split = {"part": self.part, "eval_fraction": EVAL_FRACTION, "seed": SPLIT_SEED, "rule": SPLIT_RULE}
        return {
            "spec": self.spec,
            "sources": list(self.sources),
            "split": split,
            "removed": self.removed,
            "limit": self.limit,
            "count": len(rows),
            "digest": digest,
            "prompts": rows,
        }

    @classmethod
    def given(cls, prompts: list[str], label: str = "given") -> PromptSet:
        """Prompts handed over as a list (library use): ids `label/ROW`, no spec."""
        return cls(
            spec=None, examples=tuple(Example(id=f"{label}/{row}", prompt=text, source=label) for row, text in enumerate(prompts))
        )


def resolve_prompts(
    spec: str,
    *,
    model: str | Path | None = None,
    limit: int | None = None,
    load_options: dict | None = None,
    data_dir: str | Path | None = None,
) -> PromptSet:
    """The prompt set a spec names (grammar in the module docstring).

    `model`: the model the prompts are for (being aligned, evaluated or analysed), whose own prompt
    sources the spec may name; `load_options`: options of `load_dataset` (column, functional, ...)
    for every dataset or file term; `limit`: keep the first `limit` prompts.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise MosaError(f"prompts {spec!r} must name a prompt set, e.g. advbench+harmbench or strongreject:train")
    body, part = split_part(spec.strip())
    terms = parse_terms(body, spec)
    examples: list[Example] = []
    sources = []
    removed = 0
    for op, term in terms:
        found, source = load_term(term, spec, model, load_options or {}, data_dir)
        sources.append({"term": term, "op": op, **source, "rows": len(found)})
        if op == "+":
            examples += found
            continue
        unwanted = {normalise_prompt(example.prompt) for example in found}
        kept = [example for example in examples if normalise_prompt(example.prompt) not in unwanted]
        removed += len(examples) - len(kept)
        examples = kept
    if part != "all":
        own = next((term for _, term in terms if term in PROMPT_SOURCES), None)
        if own is not None:
            raise MosaError(f"prompts {spec!r}: {own} is a model's own prompt set, not split again; drop ':{part}'")
        train, evaluation = split_examples(examples, eval_fraction=EVAL_FRACTION, seed=SPLIT_SEED)
        examples = train if part == "train" else evaluation
    if not examples:
        raise MosaError(f"prompts {spec!r} resolve to no prompts")
    return PromptSet(spec=spec.strip(), examples=tuple(examples), part=part, sources=tuple(sources), removed=removed).head(limit)


def split_part(spec: str) -> tuple[str, str]:
    """('strongreject+donotanswer', 'train') from 'strongreject+donotanswer:train'; a colon that is
    part of an existing file's path is left alone."""
    body, colon, part = spec.rpartition(":")
    if not colon or Path(spec).exists():
        return spec, "all"
    if part not in PARTS:
        raise MosaError(f"prompts {spec!r}: unknown part {part!r}; parts: {', '.join(PARTS)} (e.g. strongreject:train)")
    return body, part


def parse_terms(body: str, spec: str) -> list[tuple[str, str]]:
    """[('+', 'strongreject'), ('+', 'donotanswer'), ('~', 'advbench')] from 'strongreject+donotanswer~advbench'."""
    pieces = re.split(r"([+~])", body)
    terms = [("+", pieces[0].strip())] + [(op, term.strip()) for op, term in zip(pieces[1::2], pieces[2::2])]
    if any(not term for _, term in terms):
        raise MosaError(
            f"prompts {spec!r}: an empty term; join sources with '+' (add) or '~' (remove), e.g. strongreject~advbench"
        )
    added = [term for op, term in terms if op == "+"]
    repeated = sorted({term for term in added if added.count(term) > 1})
    if repeated:
        raise MosaError(f"prompts {spec!r} adds {repeated[0]} twice; name each source once")
    return terms


def load_term(
    term: str, spec: str, model: str | Path | None, load_options: dict, data_dir: str | Path | None
) -> tuple[list[Example], dict]:
    """A term's examples and where they came from."""
    if term in PROMPT_SOURCES:
        if load_options:
            raise MosaError(f"prompts {spec!r}: {term} takes no loader options ({', '.join(sorted(load_options))})")
        try:
            return PROMPT_SOURCES.get(term)(None if model is None else str(model))
        except MosaError as error:
            raise MosaError(f"prompts {spec!r}: {error}") from None
    examples = load_dataset(term, data_dir=data_dir, **load_options)
    where = locate(term, data_dir) if term in DATASETS else Path(term)
    return examples, {"file": str(where), **({"options": load_options} if load_options else {})}
