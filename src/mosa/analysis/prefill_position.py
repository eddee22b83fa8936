"""Experiment A (Xie et al., arXiv 2508.12398, section 3): how harmful a response gets when a
phrase is prefilled at response position k, as k moves from the start into the middle.

The paper prefills an affirmative phrase at position 0 and procedural phrases ("The next step is")
at positions 40-160 of a 256-token response, and finds attack success rising with the position:
the middle of a dLLM's response decides its safety more than the start. The phrases come from the
`prefill` attack's phrase sets (mosa.attacks.phrases).

Attack success is the share of responses a judge calls harmful, with a Wilson 95% interval. A
harm *score* is reported only from a judge that gives one (harm-rubric, strongreject); without one
the figure shows the judge's labels instead, and the JSON says so: no score is ever made up.
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
    require_judge,
    require_positions,
    respond,
    sampler_record,
)
from mosa.attacks import Target, make_attack
from mosa.data import Example, PromptSet
from mosa.models import DiffusionLM
from mosa.stats import mean_and_spread, wilson_interval


@dataclass
class PrefillPositionOptions(CommonOptions):
    """Defaults: LLaDA's setting in the paper. `for_organism()`: the organism's 32-token responses,
    where its procedure's second step starts at position 13 (mosa.organism.corpus)."""

    positions: list[int] = field(default_factory=lambda: [0, 40, 80, 120, 160])
    block_length: int = 32
    phrases: str | list[str] = "paper"  # a phrase set of the prefill attack, or a list of phrases
    judge: str | dict = "keyword-long"  # decides attack success
    score_judge: str | dict | None = None  # gives the harm score (a rubric judge); None: the judge's own scores, if any
    harmful: str = "advbench"  # a prompt spec (mosa.data.resolve_prompts): the paper's AdvBench, whole

    @classmethod
    def for_organism(cls, **changes) -> PrefillPositionOptions:
        organism = dict(
            gen_length=32,
            block_length=8,
            positions=[0, 6, 13, 20],
            phrases="organism",
            judge="organism",
            harmful=ORGANISM_HELD_OUT,
            limit=200,
            organism=True,
        )
        return cls(**{**organism, **changes})

    def check(self) -> None:
        self.check_common([self.block_length])
        require_judge("judge", self.judge)
        if self.score_judge is not None:
            require_judge("score_judge", self.score_judge)
        require_positions("positions", self.positions, self.gen_length)
        self.attack()  # the phrases: a phrase set's name or a list, refused here rather than after the model loads

    def attack(self):
        """The prefill attack that writes each behaviour's phrase at every position."""
        return make_attack("prefill", {"position": list(self.positions), "phrases": self.phrases, "seed": self.seed})


def prefill_position(
    lm: DiffusionLM,
    behaviours: PromptSet | list[Example],
    options: PrefillPositionOptions,
    *,
    model_name: str | None = None,
    progress: bool = True,
) -> dict:
    """Prefill a phrase at each position for every behaviour, sample, judge. Returns the record
    (JSON-able): per position the attack success rate with its Wilson 95% interval, the judge's
    labels and, where a judge scores, the mean harm score; and every response."""
    options.check()
    judge, judge_info = build_judge(options.judge)
    scorer, scorer_info = build_judge(options.score_judge) if options.score_judge is not None else (None, None)
    sampler = options.sampler(lm, options.block_length)
    target = Target(lm, sampler, batch_size=options.batch_size)
    cases = options.attack().cases(list(behaviours), target)  # one per behaviour and position
    responses = respond(target, cases, progress, "prefill-position")

    texts = [response.text for response in responses]
    verdicts = judge_responses(judge, cases, texts, "prefill-position")
    scores = [verdict.score for verdict in (judge_responses(scorer, cases, texts, "prefill-position") if scorer else verdicts)]
    if scorer is None and any(score is not None for score in scores):
        scorer_info = judge_info  # the judge scores as well as deciding
    if scorer_info is None:
        harm_measure = (
            f"no scoring judge was given: harm is shown as the share of responses {judge.name} judges harmful "
            "(the attack success rate) and as its labels; pass a rubric judge for a harm score"
        )
    else:
        harm_measure = f"mean score of the {scorer_info['name']} judge"

    rows = [
        {
            "prompt_id": case.prompt_id,
            "position": case.payload["position"],
            "phrase": case.payload["phrase"],
            "response": response.text,
            "label": verdict.label,
            "harmful": verdict.harmful,
            "error": verdict.error,
            "score": score,
        }
        for case, response, verdict, score in zip(cases, responses, verdicts, scores)
    ]
    return {
        "analysis": "prefill-position",
        "measures": "attack success against the response position of a prefilled phrase (experiment A)",
        "model": model_record(lm, model_name, options.organism),
        "sampler": sampler_record(sampler),
        "phrases": options.phrases,
        "judge": judge_info,
        "score_judge": scorer_info,
        "harm_measure": harm_measure,
        "prompts": prompt_record(behaviours),
        "positions": [
            summarise_position(position, [row for row in rows if row["position"] == position], scorer_info is not None)
            for position in options.positions
        ],
        "responses": rows,
    }


def summarise_position(position: int, rows: list[dict], scored: bool) -> dict:
    """One position's figures from its judged responses."""
    n = len(rows)
    harmful = sum(row["harmful"] is True for row in rows)
    low, high = wilson_interval(harmful, n)
    summary = {
        "position": position,
        "responses": n,
        "harmful": harmful,
        "undecided": sum(row["harmful"] is None for row in rows),  # empty, unparseable or error: never a success
        "asr": harmful / n,
        "asr_ci95": [low, high],
        "labels": dict(Counter(row["label"] for row in rows)),
        "mean_score": None,
        "score_ci95": None,
        "scored": 0,
    }
    if scored:
        spread = mean_and_spread([row["score"] for row in rows])
        summary.update(mean_score=spread["mean"], scored=spread["n"])
        if spread["sd"] is not None:
            half_width = 1.96 * spread["sd"] / spread["n"] ** 0.5  # normal approximation of the mean's interval
            summary["score_ci95"] = [spread["mean"] - half_width, spread["mean"] + half_width]
    return summary


def plot_prefill_position(result: dict, path: str | Path, dpi: int = figures.DPI) -> Path:
    """Left: attack success rate (%) against the prefill position, with Wilson 95% intervals.
    Right: the mean harm score with its 95% interval, or, without a scoring judge, the judge's labels."""
    plt = figures.pyplot()
    summaries = result["positions"]
    positions = [s["position"] for s in summaries]
    figure, (success, harm) = plt.subplots(1, 2, figsize=(11, 5.4))

    asr = [100 * s["asr"] for s in summaries]
    below = [max(0.0, 100 * (s["asr"] - s["asr_ci95"][0])) for s in summaries]  # never negative from rounding
    above = [max(0.0, 100 * (s["asr_ci95"][1] - s["asr"])) for s in summaries]
    success.errorbar(
        positions,
        asr,
        yerr=[below, above],
        marker="o",
        capsize=4,
        color="tab:red",
        label=f"judged harmful by {result['judge']['name']} (Wilson 95% interval)",
    )
    success.set(
        xlabel="prefill position (response token index)",
        ylabel="attack success rate (%)",
        ylim=(-3, 103),
        xticks=positions,
        title=f"attack success, {summaries[0]['responses']} prompts per position",
    )
    figures.legend_below(success)

    if result["score_judge"] is not None:
        means = [s["mean_score"] for s in summaries]
        errors = [
            [m - s["score_ci95"][0] if s["score_ci95"] else 0 for m, s in zip(means, summaries)],
            [s["score_ci95"][1] - m if s["score_ci95"] else 0 for m, s in zip(means, summaries)],
        ]
        harm.errorbar(positions, means, yerr=errors, marker="s", capsize=4, color="tab:purple", label="mean (95% interval)")
        harm.set(
            xlabel="prefill position (response token index)",
            ylabel=f"mean {result['score_judge']['name']} score",
            xticks=positions,
            title="harm score",
        )
        harm.legend()
    else:
        labels = sorted({label for s in summaries for label in s["labels"]})
        bottom = [0.0] * len(summaries)
        width = 0.6 * min((b - a for a, b in zip(positions, positions[1:])), default=1)
        for label in labels:
            shares = [100 * s["labels"].get(label, 0) / s["responses"] for s in summaries]
            harm.bar(positions, shares, bottom=bottom, width=width, label=label)
            bottom = [b + share for b, share in zip(bottom, shares)]
        harm.set(
            xlabel="prefill position (response token index)",
            ylabel="share of responses (%)",
            xticks=positions,
            title=f"{result['judge']['name']} judge's labels (no harm score: no scoring judge)",
        )
        harm.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="label")

    phrases = result["phrases"] if isinstance(result["phrases"], str) else "given"
    figure.suptitle(
        f"Experiment A: a phrase prefilled at response position k (phrase set: {phrases})\n"
        + figures.describe_run(result["model"], result["sampler"])
    )
    return figures.save(figure, path, dpi)
