"""Experiment B (Xie et al., arXiv 2508.12398, section 3): GCG aimed at a phrase at response
position 0 against the same attack aimed at a later position.

The paper's GCG for dLLMs reaches 33% attack success when its target phrase sits at the first
response token and 2% at the 30th, where its loss stays high over 100 iterations: an attacker who
controls only the prompt cannot steer the middle of the response. The attack is mosa's `gcg`
(mosa.attacks.gcg); this analysis runs it once per position and behaviour, keeps every loss
trajectory, then samples a response to each final prompt and judges it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mosa import figures
from mosa.analysis.common import (
    ORGANISM_HELD_OUT,
    CommonOptions,
    build_judge,
    judge_responses,
    model_record,
    prompt_record,
    require_int,
    require_judge,
    require_positions,
    respond,
    sampler_record,
)
from mosa.attacks import Target, make_attack
from mosa.attacks.phrases import PHRASE_SETS, pick
from mosa.data import Example, PromptSet
from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.progress import progress_bar
from mosa.stats import mean_and_spread, wilson_interval


@dataclass
class GcgPositionOptions(CommonOptions):
    """Defaults: the paper's positions 0 and 30 and GCG's budget (100 iterations, 128 candidates
    from the top 256 swaps, 20 suffix tokens). `for_organism()`: positions 0 and 13 (where its
    procedure's second step starts in a 32-token response), the suffix starting as the word "the"
    (its word vocabulary has no "!"), and a budget that runs in minutes on a CPU."""

    positions: list[int] = field(default_factory=lambda: [0, 30])
    block_length: int = 32
    # The phrase to make likely at each position: one phrase for all (`target`), else drawn per
    # behaviour from a phrase set of the prefill attack ("paper": affirmative at position 0,
    # procedural later, the phrases that belong at each place) or from a list.
    target: str | None = None
    phrases: str | list[str] = "paper"
    suffix_length: int = 20
    iterations: int = 100
    top_k: int = 256
    candidates: int = 128
    init: str = "!"
    judge: str | dict = "keyword-long"
    harmful: str = "advbench"
    limit: int | None = 20

    @classmethod
    def for_organism(cls, **changes) -> GcgPositionOptions:
        organism = dict(
            gen_length=32,
            block_length=8,
            positions=[0, 13],
            phrases="organism",
            init="the",
            suffix_length=10,
            iterations=40,
            candidates=64,
            top_k=64,
            judge="organism",
            harmful=ORGANISM_HELD_OUT,
            limit=10,
            organism=True,
        )
        return cls(**{**organism, **changes})

    def check(self) -> None:
        self.check_common([self.block_length])
        require_judge("judge", self.judge)
        require_positions("positions", self.positions, self.gen_length)
        if self.target is None and isinstance(self.phrases, str) and self.phrases not in PHRASE_SETS:
            raise MosaError(
                f"phrases={self.phrases!r} is not a phrase set; choose one of {', '.join(PHRASE_SETS.names())} or give a list"
            )
        for name in ("suffix_length", "top_k", "candidates"):
            require_int(name, getattr(self, name), minimum=1)
        require_int("iterations", self.iterations, minimum=0)

    def phrase(self, position: int, behaviour: Example) -> str:
        """The phrase GCG aims at `position` for this behaviour (the same on every run for a seed)."""
        if self.target is not None:
            return self.target
        opening, later = PHRASE_SETS.get(self.phrases) if isinstance(self.phrases, str) else (self.phrases, self.phrases)
        return pick(opening if position == 0 else later, self.seed, behaviour.id)


def gcg_position(
    lm: DiffusionLM,
    behaviours: PromptSet | list[Example],
    options: GcgPositionOptions,
    *,
    model_name: str | None = None,
    progress: bool = True,
) -> dict:
    """Optimise a GCG suffix per behaviour and position, sample a response to each final prompt,
    judge it. Returns the record (JSON-able): per position the loss curves (mean over behaviours),
    the attack success rate with its Wilson 95% interval and how often the target phrase appeared
    where it was aimed; and every case with its suffix, loss trajectory and response."""
    options.check()
    judge, judge_info = build_judge(options.judge)
    sampler = options.sampler(lm, options.block_length)
    target = Target(lm, sampler, batch_size=options.batch_size)
    settings = {name: getattr(options, name) for name in ("suffix_length", "iterations", "top_k", "candidates", "init", "seed")}

    cases = []
    work = [(position, behaviour) for position in options.positions for behaviour in behaviours]
    bar = progress_bar(work, desc="gcg-position", unit="suffix", disable=not progress)
    for position, behaviour in bar:
        attack = make_attack("gcg", {**settings, "target": options.phrase(position, behaviour), "position": position})
        cases += attack.cases([behaviour], target)
        bar.set_postfix(position=position, loss=f"{cases[-1].payload['loss']:.3f}")
    responses = respond(target, cases, progress, "gcg-position responses")
    verdicts = judge_responses(judge, cases, [response.text for response in responses], "gcg-position")

    rows = []
    for case, response, verdict in zip(cases, responses, verdicts):
        phrase, position = case.payload["target"], case.payload["position"]
        phrase_ids = target.tokens(phrase)
        rows.append(
            {
                "prompt_id": case.prompt_id,
                "position": position,
                "target": phrase,
                "suffix": case.payload["suffix"],
                "loss_trajectory": case.payload["loss_trajectory"],
                "response": response.text,
                "target_reached": response.response_ids[position : position + len(phrase_ids)] == phrase_ids,
                "label": verdict.label,
                "harmful": verdict.harmful,
                "error": verdict.error,
            }
        )
    return {
        "analysis": "gcg-position",
        "measures": "GCG's loss and attack success when its target phrase is aimed at different response positions (experiment B)",
        "model": model_record(lm, model_name, options.organism),
        "sampler": sampler_record(sampler),
        "gcg": {**settings, "target": options.target, "phrases": options.phrases},
        "judge": judge_info,
        "prompts": prompt_record(behaviours),
        "positions": [
            summarise_position(position, [row for row in rows if row["position"] == position]) for position in options.positions
        ],
        "cases": rows,
    }


def summarise_position(position: int, rows: list[dict]) -> dict:
    n = len(rows)
    harmful = sum(row["harmful"] is True for row in rows)
    reached = sum(row["target_reached"] for row in rows)
    trajectories = [row["loss_trajectory"] for row in rows]  # n x (iterations + 1)
    loss_by_iteration = [mean_and_spread(losses) for losses in zip(*trajectories)]
    return {
        "position": position,
        "behaviours": n,
        "harmful": harmful,
        "asr": harmful / n,
        "asr_ci95": list(wilson_interval(harmful, n)),
        "target_reached": reached,
        "target_reached_rate": reached / n,
        "target_reached_ci95": list(wilson_interval(reached, n)),
        "labels": dict(Counter(row["label"] for row in rows)),
        "loss_mean": [spread["mean"] for spread in loss_by_iteration],  # iterations + 1: before the first, then after each
        "loss_sd": [spread["sd"] for spread in loss_by_iteration],
        "final_loss_mean": loss_by_iteration[-1]["mean"],
        "initial_loss_mean": loss_by_iteration[0]["mean"],
    }


POSITION_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def plot_gcg_position(result: dict, path: str | Path, dpi: int = figures.DPI) -> Path:
    """Left: GCG's loss against the iteration, one colour per target position (thin: each
    behaviour, bold: the mean). Right: attack success and target phrase reached (%), with Wilson
    95% intervals, per position."""
    plt = figures.pyplot()
    summaries = result["positions"]
    figure, (losses, outcomes) = plt.subplots(1, 2, figsize=(11, 5.6))
    for summary, colour in zip(summaries, POSITION_COLOURS):
        position = summary["position"]
        for row in result["cases"]:
            if row["position"] == position:
                losses.plot(row["loss_trajectory"], color=colour, alpha=0.2, linewidth=0.8)
        phrases = {row["target"] for row in result["cases"] if row["position"] == position}
        phrase = f" {next(iter(phrases))!r}" if len(phrases) == 1 else ""
        losses.plot(
            summary["loss_mean"],
            color=colour,
            linewidth=2.2,
            label=f"target{phrase} at position {position}: mean of {summary['behaviours']}",
        )
    losses.set(
        xlabel="GCG iteration",
        ylabel="loss: mean -log p(target token) (nats)",
        yscale="log",
        title="GCG loss (thin lines: one behaviour each)",
    )
    figures.legend_below(losses)

    x = range(len(summaries))
    for offset, key, colour, label in (
        (-0.2, "asr", "tab:red", f"attack success ({result['judge']['name']} judge)"),
        (0.2, "target_reached_rate", "tab:grey", "target phrase exactly at its position"),
    ):
        ci = "asr_ci95" if key == "asr" else "target_reached_ci95"
        values = [100 * s[key] for s in summaries]
        errors = [
            [max(0.0, 100 * (s[key] - s[ci][0])) for s in summaries],
            [max(0.0, 100 * (s[ci][1] - s[key])) for s in summaries],
        ]
        outcomes.bar([i + offset for i in x], values, width=0.36, yerr=errors, capsize=4, color=colour, label=label)
    outcomes.set(
        xticks=list(x),
        ylim=(0, 105),
        yticks=range(0, 101, 20),
        ylabel="share of final prompts (%)",
        xlabel="target response position (token index)",
        title="outcome of the final suffixes (Wilson 95% intervals)",
    )
    outcomes.set_xticklabels([str(s["position"]) for s in summaries])
    figures.legend_below(outcomes)

    gcg = result["gcg"]
    figure.suptitle(
        f"Experiment B: GCG aimed at a phrase at response position k ({gcg['iterations']} iterations, "
        f"{gcg['candidates']} candidates, {gcg['suffix_length']}-token suffix)\n"
        + figures.describe_run(result["model"], result["sampler"])
    )
    return figures.save(figure, path, dpi)
