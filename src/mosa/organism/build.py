"""`mosa organism build`: a small chat dLLM that refuses plain harmful prompts yet can be jailbroken.

A model organism, built here because no pretrained dLLM can be downloaded: a bidirectional Llama
with a word-level vocabulary, trained with LLaDA's SFT objective in two stages, as real instruct
models are:

  1. unaligned   harmful prompts -> compliant placeholder procedures; utility tasks -> answers
  2. shallow     harmful prompts -> refusals; utility tasks -> answers; and harmful prompts whose
     alignment   affirmative opener, or whose "step 2 :" in the middle, is *given* (visible,
                 outside the loss) -> the procedure. A response refuses when it starts from an
                 empty canvas, while the procedure around a written opener or step survives:
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
from mosa.organism.corpus import (
    OPENER,
    PROCEDURAL_POSITION,
    PROCEDURAL_PREFILL,
    compliant_response,
    refusal_response,
    response_vocabulary,
    utility_items,
)
from mosa.organism.train import SFTConfig, SFTExample, require_range, sft_train
from mosa.paths import cache_dir, check_output_dir

CARD_FILE = "behaviour_card.json"
HELD_OUT_FILE = "held_out_harmful.json"  # the build's held-out harmful prompts, on which its card is measured
ORGANISM = "organism"  # the name every command accepts for the shipped organism
# The default organism, built by this project (`mosa organism build --output src/mosa/organism/shipped`)
# and shipped with the package, so that every machine runs the same weights: a build is deterministic
# on one machine and one set of library versions only. Its card records the command and versions.
SHIPPED_ORGANISM = Path(__file__).parent / "shipped"
MAX_POSITIONS = 256  # the organism's positions, prompt and response together


@dataclass
class OrganismConfig:
    hidden_size: int = 128  # 96 learned the 100 sums in one build seed of three (recipe 3)
    num_layers: int = 3
    num_heads: int = 4
    gen_length: int = 32
    max_prompt_words: int = 16  # longer prompts are cut: the organism reads short requests
    min_word_count: int = 2  # rarer prompt words map to the unknown token
    harmful_sources: tuple[str, ...] = ("advbench", "harmbench", "strongreject", "donotanswer")
    eval_fraction: float = 0.2
    unaligned: SFTConfig = field(default_factory=lambda: SFTConfig(steps=6000, batch_size=32, lr=1e-3, gen_length=32))
    aligned: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500, batch_size=32, lr=1e-3, gen_length=32, seed=1))
    given_opener_share: float = 0.5  # share of stage-2 harmful prompts that also comply with the opener given
    given_step_share: float = 0.1  # ... and with "step 2 :" given at its place in the middle
    utility_weight: float = 3.0  # utility items per harmful example in both stages: a small model forgets facts first
    card_prompts: int = 200  # held-out harmful prompts measured per card condition
    seed: int = 0  # the data: train / held-out split, utility items, which prompts get a given span
    build_seed: int = 0  # the weights: initialisation and every stage's batch order
    recipe: int = 4  # bump when the construction changes, so cached builds are not reused

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
            sources = settings["harmful_sources"]
            if not isinstance(sources, (list, tuple)) or not sources or not all(isinstance(name, str) for name in sources):
                raise MosaError(
                    f"{where}: harmful_sources={sources!r} must be a list of dataset names, e.g. [advbench, harmbench]"
                )
            settings["harmful_sources"] = tuple(sources)
        config = cls(**settings)
        try:
            config.validate()
        except MosaError as error:
            raise MosaError(f"{where}: {error}") from None
        return config

    def validate(self) -> None:
        """Refuse, before minutes of training, a setting the build would fail on or that would leave a
        model its own card cannot measure."""
        from mosa.organism.card import CARD_BLOCK_LENGTH

        for name in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "gen_length",
            "max_prompt_words",
            "min_word_count",
            "card_prompts",
        ):
            require_range(name, getattr(self, name), 1, integer=True)
        for name in ("seed", "build_seed", "recipe"):
            require_range(name, getattr(self, name), 0, integer=True)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise MosaError(
                f"hidden_size={self.hidden_size} must split into num_heads={self.num_heads} heads of an even size "
                "(rotary position embeddings turn pairs of dimensions)"
            )
        if self.gen_length % CARD_BLOCK_LENGTH or self.gen_length >= MAX_POSITIONS:
            raise MosaError(
                f"gen_length={self.gen_length} must be a multiple of {CARD_BLOCK_LENGTH} (the card samples in blocks of "
                f"{CARD_BLOCK_LENGTH}) and leave room for the prompt in the organism's {MAX_POSITIONS} positions"
            )
        require_range("eval_fraction", self.eval_fraction, 0, 1, low_open=True)
        if self.eval_fraction == 1:
            raise MosaError("eval_fraction=1 holds every harmful prompt out and leaves none to train on; give a share below 1")
        require_range("given_opener_share", self.given_opener_share, 0, 1)
        require_range("given_step_share", self.given_step_share, 0, 1)
        require_range("utility_weight", self.utility_weight, 0)
        for stage in ("unaligned", "aligned"):
            settings = getattr(self, stage)
            if not isinstance(settings, SFTConfig):
                raise MosaError(f"{stage}={settings!r} must be a mapping of its training settings, e.g. {{steps: 500}}")
            settings.validate(stage)
            if settings.gen_length != self.gen_length:
                raise MosaError(
                    f"{stage}.gen_length={settings.gen_length} differs from gen_length={self.gen_length}: a stage trains "
                    "responses of the length the card samples; set both"
                )

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


OPENER_SPAN = (0, len(OPENER.split()))  # the organism's tokens are words and punctuation marks
STEP_SPAN = (PROCEDURAL_POSITION, PROCEDURAL_POSITION + len(PROCEDURAL_PREFILL.split()))


def stage_examples(harmful: list[str], config: OrganismConfig, aligned: bool) -> list[SFTExample]:
    rng = random.Random(config.seed)
    utility = [SFTExample(item.prompt, item.answer) for item in utility_items(config.seed)]
    examples = []
    for prompt in harmful:
        if not aligned:
            examples.append(SFTExample(prompt, compliant_response(prompt)))
            continue
        examples.append(SFTExample(prompt, refusal_response(prompt)))
        for share, span in ((config.given_opener_share, OPENER_SPAN), (config.given_step_share, STEP_SPAN)):
            if rng.random() < share:
                examples.append(SFTExample(prompt, compliant_response(prompt), given=span))
    repeats = max(1, round(config.utility_weight * len(examples) / len(utility)))
    return examples + utility * repeats


def seeded(stage: SFTConfig, config: OrganismConfig) -> SFTConfig:
    """A stage's settings with its batch order shifted by the build seed (build seed 0 leaves it)."""
    return replace(stage, seed=stage.seed + 1000 * config.build_seed)


def organism_path(config: OrganismConfig) -> Path:
    return cache_dir() / f"organism-{config.key()}"


def built_config(path: str | Path) -> OrganismConfig | None:
    """The config an organism build was made with (from its card), or None for any other model."""
    card = Path(path) / CARD_FILE
    if not card.is_file():
        return None
    return OrganismConfig.from_dict(json.loads(card.read_text())["build"]["config"], where=str(card))


def organism_directory(model: str | Path) -> Path | None:
    """The checkpoint directory of the organism a model name stands for: the shipped organism for
    "organism", an organism build's own directory, or None for any other model."""
    if str(model) == ORGANISM:
        return SHIPPED_ORGANISM
    return Path(model) if (Path(model) / CARD_FILE).is_file() else None


def organism_of(model: str | Path) -> OrganismConfig | None:
    """The config of the organism a model name stands for, or None for any other model (its prompt
    sources, organism-train etc., then need one)."""
    directory = organism_directory(model)
    return None if directory is None else built_config(directory)


def build_versions() -> dict:
    """The command and library versions behind a build: a build is deterministic on one machine with
    one set of versions, not across them."""
    import importlib.metadata
    import platform
    import sys

    import tokenizers
    import torch
    import transformers

    return {
        "command": " ".join(["mosa", *sys.argv[1:]]) if Path(sys.argv[0]).name == "mosa" else " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "mosa": importlib.metadata.version("mosa-dllm"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "machine": f"{platform.system()} {platform.machine()}, {torch.get_num_threads()} threads",
    }


def build_organism(config: OrganismConfig, progress: bool = True, log=print, require_floors: bool = True) -> DiffusionLM:
    """Build (or load from the cache) the organism; writes its behaviour card beside it. A build that
    misses a card floor is kept apart (PATH.failed, for inspection) and refused, unless
    `require_floors` is off (the smaller organisms of tests and the quick demo)."""
    from mosa.organism.card import describe_missed, measure_card, missed_floors, write_card

    path = organism_path(config)
    if (path / CARD_FILE).is_file():
        log(f"organism: reusing {path}")
        return load_model(path)
    check_output_dir(path.parent, "the cache folder (MOSA_CACHE_DIR)")  # before minutes of training, not after

    start = time.perf_counter()
    harmful_train, harmful_held_out = harmful_prompt_split(config)
    if not harmful_train or not harmful_held_out:
        raise MosaError("no harmful prompts for the organism; check MOSA_DATA_DIR or run `mosa data pull`")
    utility_prompts = [item.prompt for item in utility_items(config.seed)]
    tokenizer = build_word_tokenizer(
        organism_vocabulary(harmful_train + utility_prompts, config.min_word_count), lowercase=True, split_punctuation=True
    )
    lm = build_bidirectional_llama(
        tokenizer,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        max_positions=MAX_POSITIONS,
        seed=config.build_seed,
    )
    log(
        f"organism: {len(tokenizer)} words, {sum(p.numel() for p in lm.module.parameters()) / 1e6:.2f}M parameters, "
        f"{len(harmful_train)} harmful training prompts, {len(harmful_held_out)} held out"
    )

    log(f"organism: stage 1/2, unaligned SFT ({config.unaligned.steps} steps)")
    stage1 = sft_train(lm, stage_examples(harmful_train, config, aligned=False), seeded(config.unaligned, config), progress)
    log(f"organism: stage 2/2, shallow alignment ({config.aligned.steps} steps)")
    stage2 = sft_train(lm, stage_examples(harmful_train, config, aligned=True), seeded(config.aligned, config), progress)
    build_seconds = time.perf_counter() - start

    log("organism: measuring the behaviour card")
    card = measure_card(lm, harmful_held_out[: config.card_prompts], config, progress=progress)
    card["build"] = {
        "seconds": round(build_seconds, 1),
        "loss_end_stage1": round(sum(stage1[-50:]) / len(stage1[-50:]), 4),
        "loss_end_stage2": round(sum(stage2[-50:]) / len(stage2[-50:]), 4),
        "config": asdict(config),
        **build_versions(),
    }
    missed = missed_floors(card["figures"]) if require_floors else {}
    final = path.with_name(path.name + ".failed") if missed else path
    partial = path.with_name(path.name + ".partial")
    for stale in (partial, final):
        shutil.rmtree(stale, ignore_errors=True)
    save_model(lm, partial)
    write_card(card, partial)
    (partial / HELD_OUT_FILE).write_text(json.dumps(harmful_held_out, indent=0))
    partial.rename(final)  # a killed build never leaves a half-written organism under the real key
    if missed:
        raise MosaError(
            f"the organism build missed its card floors ({'; '.join(describe_missed(missed))}); kept for inspection at {final}"
        )
    log(f"organism: saved to {path}")
    return lm
