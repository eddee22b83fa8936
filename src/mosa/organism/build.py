"""`mosa organism build`: a small chat dLLM that refuses plain harmful prompts yet can be jailbroken.

A model organism, built here because no pretrained dLLM can be downloaded: a bidirectional Llama
with a word-level vocabulary, trained with LLaDA's SFT objective in two stages, as real instruct
models are:

  1. unaligned   harmful prompts -> compliant placeholder procedures; utility tasks -> answers
  2. shallow     harmful prompts -> refusals; utility tasks -> answers; and harmful prompts whose
     alignment   affirmative opener is *given* (visible, outside the loss) -> the procedure.
                 The first tokens learn to refuse while the continuation after an opener survives:
                 shallow alignment by construction, which prefill attacks exploit.

Harmful prompts come from the training split of the mosa.data benchmarks; the held-out split is
what the behaviour card (and later evaluations) use. The result is saved as a standard Hugging
Face checkpoint with its tokenizer and card, cached under a key derived from the config.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from mosa.errors import MosaError
from mosa.models import DiffusionLM, load_model
from mosa.models.build import build_bidirectional_llama, build_word_tokenizer, save_model
from mosa.organism.corpus import OPENER, compliant_response, compliant_steps, refusal_response, response_vocabulary, utility_items
from mosa.organism.train import SFTConfig, SFTExample, sft_train
from mosa.paths import cache_dir, check_output_dir

CARD_FILE = "behaviour_card.json"


@dataclass
class OrganismConfig:
    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    gen_length: int = 32
    max_prompt_words: int = 16  # longer prompts are cut: the organism reads short requests
    min_word_count: int = 2  # rarer prompt words map to the unknown token
    harmful_sources: tuple[str, ...] = ("advbench", "harmbench", "strongreject", "donotanswer")
    eval_fraction: float = 0.2
    unaligned: SFTConfig = field(default_factory=lambda: SFTConfig(steps=3000, batch_size=32, lr=1e-3, gen_length=32))
    aligned: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500, batch_size=32, lr=1e-3, gen_length=32, seed=1))
    given_opener_share: float = 0.5  # share of stage-2 harmful examples that keep the opener and comply
    card_prompts: int = 200  # held-out harmful prompts measured per card condition
    seed: int = 0
    recipe: int = 1  # bump when the construction changes, so cached builds are not reused

    @classmethod
    def from_dict(cls, settings: dict, where: str = "organism config") -> OrganismConfig:
        """From YAML or a card's stored config: stage settings nested as mappings, lists as lists."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise MosaError(f"{where}: unknown settings {unknown}; known: {sorted(known)}")
        settings = dict(settings)
        stage_fields = {f.name for f in fields(SFTConfig)}
        for stage in ("unaligned", "aligned"):
            if isinstance(settings.get(stage), dict):
                unknown = sorted(set(settings[stage]) - stage_fields)
                if unknown:
                    raise MosaError(f"{where}: unknown {stage} settings {unknown}; known: {sorted(stage_fields)}")
                settings[stage] = SFTConfig(**settings[stage])
        if "harmful_sources" in settings:
            settings["harmful_sources"] = tuple(settings["harmful_sources"])
        return cls(**settings)

    def key(self) -> str:
        """Names the cached build; the judge's version is part of it because the card uses it."""
        from mosa.organism.judge import VERSION

        identity = {**asdict(self), "judge": VERSION}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def harmful_prompt_split(config: OrganismConfig) -> tuple[list[str], list[str]]:
    """Deterministic train / held-out split of the harmful benchmarks' prompts, cut to
    `max_prompt_words` before splitting, so that no cut prompt lands on both sides."""
    from mosa.data import load_dataset, split_examples

    examples = [
        replace(example, prompt=" ".join(example.prompt.split()[: config.max_prompt_words]))
        for source in config.harmful_sources
        for example in load_dataset(source)
    ]
    train, held_out = split_examples(examples, eval_fraction=config.eval_fraction, seed=config.seed)
    unique = lambda found: list(dict.fromkeys(e.prompt for e in found))  # noqa: E731
    return unique(train), unique(held_out)


def organism_vocabulary(prompts: list[str], min_count: int) -> list[str]:
    """Response words first (always known), then prompt words seen at least `min_count` times."""
    from tokenizers import pre_tokenizers

    splitter = pre_tokenizers.Whitespace()
    counts = Counter(word.lower() for prompt in prompts for word, _ in splitter.pre_tokenize_str(prompt))
    frequent = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return list(dict.fromkeys(response_vocabulary() + frequent))


def stage_examples(harmful: list[str], config: OrganismConfig, aligned: bool) -> list[SFTExample]:
    rng = random.Random(config.seed)
    utility = [SFTExample(item.prompt, item.answer) for item in utility_items(config.seed)]
    examples = []
    for prompt in harmful:
        if not aligned:
            examples.append(SFTExample(prompt, compliant_response(prompt)))
            continue
        examples.append(SFTExample(prompt, refusal_response(prompt)))
        if rng.random() < config.given_opener_share:
            examples.append(SFTExample(prompt, compliant_steps(prompt), given=OPENER))
    # Utility twice as often as harmful requests: a small model forgets facts first.
    repeats = max(1, 2 * len(examples) // len(utility))
    return examples + utility * repeats


def organism_tokenizer(config: OrganismConfig, harmful_train: list[str] | None = None):
    """The organism's word-level tokenizer. Its vocabulary comes from the training prompts alone, so
    it is known in seconds, before (or without) a build: `mosa align` checks its sentences with it."""
    if harmful_train is None:
        harmful_train = harmful_prompt_split(config)[0]
    utility_prompts = [item.prompt for item in utility_items(config.seed)]
    return build_word_tokenizer(
        organism_vocabulary(harmful_train + utility_prompts, config.min_word_count), lowercase=True, split_punctuation=True
    )


def organism_path(config: OrganismConfig) -> Path:
    return cache_dir() / f"organism-{config.key()}"


def built_config(path: str | Path) -> OrganismConfig | None:
    """The config an organism build was made with (from its card), or None for any other model."""
    card = Path(path) / CARD_FILE
    if not card.is_file():
        return None
    return OrganismConfig.from_dict(json.loads(card.read_text())["build"]["config"], where=str(card))


def organism_of(model: str) -> OrganismConfig | None:
    """The organism a model name stands for: the default one for "organism", a build directory's own
    config, or None for any other model (its prompt sources, organism-train etc., then need one)."""
    if model == "organism":
        return OrganismConfig()
    return built_config(model) if Path(model).is_dir() else None


def build_organism(config: OrganismConfig, progress: bool = True, log=print) -> DiffusionLM:
    """Build (or load from the cache) the organism; writes its behaviour card beside it."""
    from mosa.organism.card import measure_card, write_card

    path = organism_path(config)
    if (path / CARD_FILE).is_file():
        log(f"organism: reusing {path}")
        return load_model(path)
    check_output_dir(path.parent, "the cache folder (MOSA_CACHE_DIR)")  # before minutes of training, not after

    start = time.perf_counter()
    harmful_train, harmful_held_out = harmful_prompt_split(config)
    if not harmful_train or not harmful_held_out:
        raise MosaError("no harmful prompts for the organism; check MOSA_DATA_DIR or run `mosa data pull`")
    tokenizer = organism_tokenizer(config, harmful_train)
    lm = build_bidirectional_llama(
        tokenizer, hidden_size=config.hidden_size, num_layers=config.num_layers, num_heads=config.num_heads,
        max_positions=256, seed=config.seed,
    )
    log(f"organism: {len(tokenizer)} words, {sum(p.numel() for p in lm.module.parameters()) / 1e6:.2f}M parameters, "
        f"{len(harmful_train)} harmful training prompts, {len(harmful_held_out)} held out")

    log(f"organism: stage 1/2, unaligned SFT ({config.unaligned.steps} steps)")
    stage1 = sft_train(lm, stage_examples(harmful_train, config, aligned=False), config.unaligned, progress)
    log(f"organism: stage 2/2, shallow alignment ({config.aligned.steps} steps)")
    stage2 = sft_train(lm, stage_examples(harmful_train, config, aligned=True), config.aligned, progress)
    build_seconds = time.perf_counter() - start

    log("organism: measuring the behaviour card")
    card = measure_card(lm, harmful_held_out[: config.card_prompts], config)
    card["build"] = {
        "seconds": round(build_seconds, 1),
        "loss_end_stage1": round(sum(stage1[-50:]) / len(stage1[-50:]), 4),
        "loss_end_stage2": round(sum(stage2[-50:]) / len(stage2[-50:]), 4),
        "config": asdict(config),
    }
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    save_model(lm, partial)
    write_card(card, partial)
    (partial / "held_out_harmful.json").write_text(json.dumps(harmful_held_out, indent=0))
    partial.rename(path)  # a killed build never leaves a half-written organism under the real key
    log(f"organism: saved to {path}")
    return lm
