"""The organism as a plug-in: what it adds to mosa's registries, one function per registry.

mosa.plugins names these functions, and each registry calls its own the first time it is read, so
no module outside mosa.organism imports the organism to use it. The organism adds

    judge           "organism", its structure judge (judge.py)
    prompt sources  organism-train, organism-held-out, organism-utility: its own split (build.py);
                    organism-train's prompts carry the placeholder procedure its unaligned stage was
                    trained to answer them with, and organism-utility's items their answers, as the
                    response (Example.target) of the pairs `mosa align --objective a2d` trains on
    phrase set      "organism": its opener at response position 0, "step 2 :" later (corpus.py)
    model profile   "organism": the name of the shipped organism and every organism build's
                    directory, with the card's sampler settings and the card as behaviour monitor;
                    it builds organisms and measures their cards for the demo
    eval config     "organism": every dLLM-native attack on its held-out prompts (configs/eval.yaml)
    utility config  "organism": its utility items through lm-eval, as its card scores them (configs/utility.yaml)
    align preset    "organism": MOSA's settings for its 32-token responses (configs/align.yaml)
    command         `mosa organism build | card` (command.py)

Everything heavier than this module (torch, through build.py and card.py) is imported when it is
used, so that registering the prompt sources keeps mosa.data free of torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

from mosa.data.records import Example
from mosa.errors import MosaError
from mosa.profiles import BuildableProfile

SOURCES = ("organism-train", "organism-held-out", "organism-utility")
CONFIGS = Path(__file__).parent / "configs"
MONITOR_PROMPTS = 40  # `mosa align`'s monitor: the card, measured on the first 40 held-out prompts


def register_judge() -> None:
    from mosa.judges.base import JUDGES
    from mosa.organism.judge import OrganismJudge

    JUDGES.add("organism", OrganismJudge)


def register_prompt_sources() -> None:
    from mosa.data.prompts import PROMPT_SOURCES

    for source in SOURCES:
        PROMPT_SOURCES.add(source, partial(organism_prompts, source))


def register_phrase_set() -> None:
    from mosa.attacks.phrases import PHRASE_SETS
    from mosa.organism.corpus import OPENER, PROCEDURAL_PREFILL

    PHRASE_SETS.add("organism", ((OPENER,), (PROCEDURAL_PREFILL,)))


def register_profile() -> None:
    from mosa.profiles import MODEL_PROFILES

    MODEL_PROFILES.add("organism", OrganismProfile())


def register_eval_config() -> None:
    from mosa.eval.config import EVAL_CONFIGS

    EVAL_CONFIGS.add("organism", CONFIGS / "eval.yaml")


def register_utility_config() -> None:
    from mosa.utility.run import UTILITY_CONFIGS

    UTILITY_CONFIGS.add("organism", CONFIGS / "utility.yaml")


def register_align_preset() -> None:
    from mosa.align.settings import ALIGN_PRESETS

    ALIGN_PRESETS.add("organism", CONFIGS / "align.yaml")


def register_command() -> None:
    from mosa.cli import COMMANDS
    from mosa.organism.command import register

    COMMANDS.add("organism", register)


def organism_prompts(source: str, model: str | None) -> tuple[list[Example], dict]:
    """A prompt source of the organism `model` names, from the split its build made; and its record:
    the build whose split it is."""
    from mosa.organism.build import harmful_prompt_split, organism_of
    from mosa.organism.corpus import compliant_response, utility_items

    organism = None if model is None else organism_of(model)
    if organism is None:
        raise MosaError(
            f"{source} needs an organism model (model: organism, or an organism build directory); "
            "name datasets instead, e.g. advbench+harmbench"
        )
    if source == "organism-utility":
        examples = [
            Example(id=f"{source}/{row}", prompt=item.prompt, source=source, target=item.answer)
            for row, item in enumerate(utility_items(organism.seed))
        ]
    elif source == "organism-train":  # with the compliant procedure stage 1 trained (a2d's harmful pairs)
        prompts = harmful_prompt_split(organism)[0]
        examples = [
            Example(id=f"{source}/{row}", prompt=prompt, source=source, target=compliant_response(prompt))
            for row, prompt in enumerate(prompts)
        ]
    else:
        prompts = harmful_prompt_split(organism)[1]
        examples = [Example(id=f"{source}/{row}", prompt=prompt, source=source) for row, prompt in enumerate(prompts)]
    return examples, {"organism": organism.key()}


class OrganismProfile(BuildableProfile):
    name = "organism"

    def checkpoint(self, model: str) -> Path | None:
        from mosa.organism.build import organism_directory

        return organism_directory(model)

    def sampler_defaults(self, model: str) -> dict:
        """The settings its card was measured with."""
        from mosa.organism.card import card_sampler_settings

        return card_sampler_settings(self.checkpoint(model))

    def monitor(self, model: str, progress: bool):
        """Its behaviour card, on the held-out prompts of the build being aligned."""
        from mosa.data import resolve_prompts
        from mosa.organism.build import organism_of
        from mosa.organism.card import behaviour_monitor

        held_out = resolve_prompts("organism-held-out", model=model, limit=MONITOR_PROMPTS)
        monitor = behaviour_monitor(held_out.prompts, organism_of(model), prompts=len(held_out), progress=progress)
        return monitor, {"harmful": held_out.record()}

    def analysis_options(self, options_class):
        """Fitted to its 32-token responses (each options class's `for_organism`)."""
        return options_class.for_organism()

    def build_directory(self, settings: dict) -> Path:
        from mosa.organism.build import OrganismConfig, organism_path

        return organism_path(OrganismConfig.from_dict(settings))

    def build(self, settings: dict, *, progress: bool, log) -> None:
        from mosa.organism.build import OrganismConfig, build_organism

        build_organism(OrganismConfig.from_dict(settings), progress=progress, log=log, require_floors=False)

    def build_settings(self, checkpoint: Path) -> dict:
        from mosa.organism.build import built_config

        return asdict(built_config(checkpoint))

    def card_prompts(self, checkpoint: Path) -> list[str]:
        """The held-out split as its build wrote it, beside the weights."""
        from mosa.organism.build import HELD_OUT_FILE

        return json.loads((Path(checkpoint) / HELD_OUT_FILE).read_text())

    def measure_card(self, lm, checkpoint: Path, prompts: list[str], *, progress: bool) -> dict:
        from mosa.organism.build import built_config
        from mosa.organism.card import measure_card

        return measure_card(lm, prompts, built_config(checkpoint), progress=progress)

    def missed_floors(self, figures: dict, *, aligned: bool) -> dict[str, tuple[float, float]]:
        """An aligned model is not held to the compliance floors: they say the organism is worth attacking,
        and an aligned model below them is what aligning it is for."""
        from mosa.organism.card import FLOORS, missed_floors

        floors = {key: floor for key, floor in FLOORS.items() if not (aligned and key.startswith("compliance"))}
        return missed_floors(figures, floors)
