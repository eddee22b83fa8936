"""Experiment C (Xie et al., arXiv 2508.12398, section 3): the order in which a dLLM unmasks its
response, for benign and for harmful prompts.

The paper finds dLLMs unmask nearly left to right (the mean position of the tokens committed at a
step grows linearly with the step), so a prompt-only attacker cannot steer the middle of the
response first. Two things can fake or hide that order, and both are measured here:

- semi-autoregressive blocks force left-to-right order between blocks, whatever the model would
  do; so the order is measured with one block (block_length = gen_length) as well;
- instruct dLLMs pad their responses with EOS and commit that padding first, from the right end
  of the canvas, which makes a one-block order look right to left and hides the order of the
  content. EOS/padding commits are therefore reported apart from content tokens.

The left-to-right score is Kendall's tau-b between the step that committed a position and the
position, per response (+1: strictly left to right, -1: right to left), then averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mosa import figures
from mosa.analysis.common import (
    ORGANISM_HELD_OUT,
    ORGANISM_UTILITY,
    CommonOptions,
    model_record,
    prompt_record,
    respond,
    sampler_record,
)
from mosa.attacks import Target, TestCase, user_turn
from mosa.data import Example, PromptSet
from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.sampling import summarise_order


@dataclass
class DecodeOrderOptions(CommonOptions):
    """Defaults: 256-token responses in one block and in blocks of 32 (LLaDA's usual block).
    `for_organism()`: 32 tokens in one block and in blocks of 8 (its behaviour card's setting)."""

    block_lengths: list[int] = field(default_factory=lambda: [256, 32])
    benign: str = "gsm8k"
    harmful: str = "advbench"

    @classmethod
    def for_organism(cls, **changes) -> DecodeOrderOptions:
        organism = dict(
            gen_length=32, block_lengths=[32, 8], benign=ORGANISM_UTILITY, harmful=ORGANISM_HELD_OUT, limit=100, organism=True
        )
        return cls(**{**organism, **changes})

    def check(self) -> None:
        if not isinstance(self.block_lengths, list) or not self.block_lengths:
            raise MosaError(f"block_lengths={self.block_lengths!r} must be a non-empty list of block lengths")
        self.check_common(self.block_lengths)


def decode_order(
    lm: DiffusionLM,
    prompt_sets: dict[str, PromptSet | list[Example]],
    options: DecodeOrderOptions,
    *,
    model_name: str | None = None,
    progress: bool = True,
) -> dict:
    """Sample every prompt set ({"benign": [...], "harmful": [...]}) under each block length and
    summarise the decoding order (mosa.sampling.summarise_order). Returns the record (JSON-able)."""
    options.check()
    # EOS padding, the end-of-turn token and the pad token all end a response rather than say something.
    end_ids = sorted({lm.eos_id, lm.eot_id, lm.pad_id})
    settings = []
    for block_length in options.block_lengths:
        sampler = options.sampler(lm, block_length)
        target = Target(lm, sampler, batch_size=options.batch_size)
        summaries = {}
        for name, examples in prompt_sets.items():
            cases = [TestCase(prompt_id=e.id, behaviour=e.prompt, messages=user_turn(e.prompt)) for e in examples]
            responses = respond(target, cases, progress, f"decode-order {name}, blocks of {block_length}")
            commit_step = torch.tensor([response.commit_step for response in responses])  # N x gen_length
            response_ids = torch.tensor([response.response_ids for response in responses])  # N x gen_length
            summaries[name] = summarise_order(response_ids, commit_step, end_ids=end_ids, mask_id=lm.mask_id, steps=sampler.steps)
        settings.append(
            {
                "block_length": block_length,
                "one_block": block_length == options.gen_length,
                "sampler": sampler_record(sampler),
                "prompt_sets": summaries,
            }
        )
    return {
        "analysis": "decode-order",
        "measures": "the response position of the tokens committed at each denoising step (experiment C)",
        "model": model_record(lm, model_name, options.organism),
        "end_tokens": {str(token): lm.tokenizer.convert_ids_to_tokens(token) for token in end_ids},
        "prompts": {name: prompt_record(prompts) for name, prompts in prompt_sets.items()},
        "settings": settings,
    }


SET_COLOURS = {"benign": "tab:blue", "harmful": "tab:red"}


def plot_decode_order(result: dict, path: str | Path, dpi: int = figures.DPI) -> Path:
    """One panel per block length: mean response position against denoising step, per prompt set,
    all tokens (solid) and content only (dashed), with strict left to right for reference. Then a
    panel of Kendall's tau per setting and prompt set, all tokens and content only, and one with
    the legends and when EOS/padding was committed. Two panels a row, so the figure keeps a width
    at which its text stays legible (mosa.figures)."""
    plt = figures.pyplot()
    settings = result["settings"]
    rows = -(-(len(settings) + 2) // 2)  # the settings, the tau panel and the notes, two a row
    figure, grid = plt.subplots(rows, 2, figsize=(figures.MAX_WIDTH, 4.6 * rows), squeeze=False)
    axes = list(grid.flat)
    for axis, setting in zip(axes, settings):
        sampler = setting["sampler"]
        steps = list(range(sampler["steps"]))
        axis.plot(
            steps,
            [s * sampler["gen_length"] / sampler["steps"] for s in steps],
            color="grey",
            linestyle=":",
            label="strict left to right",
        )
        for name, summary in setting["prompt_sets"].items():
            colour = SET_COLOURS.get(name)
            axis.plot(steps, _gaps(summary["mean_position_by_step"]), color=colour, label=f"{name}: all tokens")
            # Markers: where a step committed content only, this lies on the all-tokens line.
            axis.plot(
                steps,
                _gaps(summary["mean_content_position_by_step"]),
                color=colour,
                linestyle="--",
                marker="o",
                markersize=3,
                label=f"{name}: content only (no EOS/padding)",
            )
        kind = (
            "one block (block_length = gen_length)"
            if setting["one_block"]
            else f"blocks of {setting['block_length']} (semi-autoregressive)"
        )
        axis.set(xlabel="denoising step", ylabel="mean position committed (token)", title=kind, ylim=(0, sampler["gen_length"]))

    taus = axes[len(settings)]
    labels, all_tokens, content, all_sd, content_sd = [], [], [], [], []
    for setting in settings:
        blocks = "1 block" if setting["one_block"] else f"blocks of {setting['block_length']}"
        for name, summary in setting["prompt_sets"].items():
            labels.append(f"{name}\n{blocks}")
            for means, spreads, key in ((all_tokens, all_sd, "kendall_tau_all"), (content, content_sd, "kendall_tau_content")):
                means.append(summary[key]["mean"] or 0.0)
                spreads.append(summary[key]["sd"] or 0.0)
    x = range(len(labels))
    taus.bar([i - 0.2 for i in x], all_tokens, width=0.4, yerr=all_sd, capsize=3, color="tab:grey", label="all committed tokens")
    taus.bar([i + 0.2 for i in x], content, width=0.4, yerr=content_sd, capsize=3, color="tab:green", label="content tokens only")
    taus.axhline(0, color="black", linewidth=0.8)
    taus.set(
        xticks=list(x),
        ylim=(-1.05, 1.05),
        ylabel="Kendall's tau (step vs position)",
        title="left-to-right score per response\n(mean, bars: sd; +1 left to right, -1 right to left)",
    )
    taus.set_xticklabels(labels)

    # The legends go beside the panels, where no bar or line can hide under them.
    notes = axes[len(settings) + 1]
    notes.add_artist(notes.legend(*axes[0].get_legend_handles_labels(), loc="upper left", title="mean position committed"))
    notes.legend(*taus.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(0.0, 0.56), title="Kendall's tau")
    lines = [
        f"{name}, "
        + ("one block" if setting["one_block"] else f"blocks of {setting['block_length']}")
        + f": EOS/padding {s['end_commits']['mean_step']:.1f} ({s['end_commits']['count']} tokens), "
        f"content {s['content_commits']['mean_step']:.1f} ({s['content_commits']['count']})"
        for setting in settings
        for name, s in setting["prompt_sets"].items()
        if s["end_commits"]["count"] and s["content_commits"]["count"]
    ]
    if lines:
        notes.text(0.0, 0.0, "mean denoising step of the commits:\n" + "\n".join(lines), va="bottom", transform=notes.transAxes)
    for axis in axes[len(settings) + 1 :]:
        axis.axis("off")

    figure.suptitle(
        "Experiment C: the order in which the response is unmasked\n"
        + figures.describe_run(result["model"], settings[0]["sampler"], block_length=False)
    )
    return figures.save(figure, path, dpi)


def _gaps(values: list[float | None]) -> list[float]:
    """None (no token committed at that step) -> NaN, a gap in the line."""
    return [float("nan") if value is None else value for value in values]
