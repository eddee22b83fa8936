"""Model profiles: what mosa knows about a family of models besides their weights, given by the
plug-in that made them (mosa.plugins).

A profile claims the model names and checkpoint directories that are its own and says, for them,
which checkpoint a name stands for, which sampler settings `mosa generate` starts from, which
behaviour monitor `mosa align` runs and which defaults the analyses take. The model organism
registers one (mosa.organism.plugin); a model no profile claims gets mosa's general defaults.

A family whose models mosa builds on this machine, and measures on a behaviour card, has a
BuildableProfile: the organism's is one, and the demo (mosa.pipelines.demo) reaches the organism
through it alone.

    MODEL_PROFILES.add("my-models", MyModels())    # a ModelProfile, from a plug-in's registration
    model_path("organism")                         # the checkpoint to load: the shipped organism's directory
    find_profile("organism")                       # the organism's profile; None for a model no profile claims
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mosa.registry import Registry


class ModelProfile:
    name: str  # recorded as the kind of a checkpoint that a name stands for (mosa.provenance)

    def checkpoint(self, model: str) -> Path | None:
        """The checkpoint directory that `model` (a name or a directory) stands for, when it is one of
        this profile's models; None for any other model."""
        raise NotImplementedError

    def sampler_defaults(self, model: str) -> dict:
        """SamplerConfig settings `mosa generate` starts from, before --config and the flags."""
        return {}

    def monitor(self, model: str, progress: bool):
        """The behaviour monitor `mosa align` runs on this model and the record of its prompts, or None
        for mosa's keyword monitor (mosa.align.monitor)."""
        return None

    def analysis_options(self, options_class):
        """The defaults of an analysis (mosa.analysis's options classes) for this model."""
        return options_class()


class BuildableProfile(ModelProfile):
    """A family of models that mosa builds on this machine, from settings, and describes by a behaviour
    card: figures of what a model does (refusal, compliance under attack, utility, coherence), each
    held to a floor. What the demo needs of the model it runs on."""

    def build_directory(self, settings: dict) -> Path:
        """The checkpoint directory of the build of `settings` (fields of the family's build config, as
        in its YAML: stage settings as nested mappings)."""
        raise NotImplementedError

    def build(self, settings: dict, *, progress: bool, log: Callable[[str], None]) -> None:
        """Build a model from `settings` into `build_directory(settings)`, or reuse the build already
        there. A build below the card's floors is kept, not refused: its card says so."""
        raise NotImplementedError

    def build_settings(self, checkpoint: Path) -> dict:
        """Every setting the build in `checkpoint` was made with, defaults included."""
        raise NotImplementedError

    def card_prompts(self, checkpoint: Path) -> list[str]:
        """The held-out harmful prompts of the build in `checkpoint`, on which its card is measured."""
        raise NotImplementedError

    def measure_card(self, lm, checkpoint: Path, prompts: list[str], *, progress: bool) -> dict:
        """The behaviour card of `lm`, a model of the build in `checkpoint` (an adapter merged into it, or
        not), on the harmful `prompts`: its "figures", "labels" and "utility_by_task"."""
        raise NotImplementedError

    def missed_floors(self, figures: dict, *, aligned: bool) -> dict[str, tuple[float, float]]:
        """The card's floors that `figures` miss: figure -> (value, floor). An `aligned` model is held
        only to the floors that aligning must not break."""
        raise NotImplementedError


MODEL_PROFILES: Registry[ModelProfile] = Registry("model profile")


def find_profile(model: str | Path) -> ModelProfile | None:
    """The profile that claims `model` (a name or a checkpoint directory), or None."""
    return next((profile for profile in MODEL_PROFILES.entries().values() if profile.checkpoint(str(model)) is not None), None)


def model_path(model: str | Path) -> str:
    """What to load for `model`: the checkpoint its profile says it stands for ("organism": the shipped
    organism's directory), else `model` itself (a directory or a hub id)."""
    profile = find_profile(model)
    return str(model) if profile is None else str(profile.checkpoint(str(model)))
