"""Offline benchmark data: loaders for the standard formats, named datasets, splits, `mosa data pull`.

    from mosa.data import load_dataset, split_examples
    behaviours = load_dataset("harmbench")                      # 159 standard behaviours
    prompts = load_dataset("my_prompts.csv", column="text")     # any CSV / JSONL
    train, evaluation = split_examples(prompts, eval_fraction=0.2, seed=0)
    training = resolve_prompts("strongreject+donotanswer~advbench:train")   # a prompt set by spec

Named datasets resolve from `data_dir=`, else $MOSA_DATA_DIR, else the cache that `mosa data pull`
fills ($MOSA_CACHE_DIR/data). Nothing here needs torch, except prompt sources a plug-in adds (the
organism's). Details: docs/data.md.
"""

from mosa.data.loaders import (
    detect_format,
    load_advbench,
    load_donotanswer,
    load_file,
    load_gsm8k,
    load_harmbench,
    load_humaneval,
    load_mmlu,
    load_pyrit_seeds,
    load_strongreject,
)
from mosa.data.pinned import PINNED_FILES, PinnedFile, PullResult, pull
from mosa.data.prompts import PROMPT_SOURCES, PromptSet, prompt_hash, resolve_prompts
from mosa.data.records import Example, MosaDataWarning, normalise_prompt
from mosa.data.registry import DATASETS, NamedDataset, cache_data_dir, load_dataset, locate, resolve, search_dirs
from mosa.data.splits import split_examples

__all__ = [
    "DATASETS",
    "PINNED_FILES",
    "PROMPT_SOURCES",
    "Example",
    "MosaDataWarning",
    "NamedDataset",
    "PinnedFile",
    "PromptSet",
    "PullResult",
    "cache_data_dir",
    "detect_format",
    "load_advbench",
    "load_dataset",
    "load_donotanswer",
    "load_file",
    "load_gsm8k",
    "load_harmbench",
    "load_humaneval",
    "load_mmlu",
    "load_pyrit_seeds",
    "load_strongreject",
    "locate",
    "normalise_prompt",
    "prompt_hash",
    "pull",
    "resolve",
    "resolve_prompts",
    "search_dirs",
    "split_examples",
]
