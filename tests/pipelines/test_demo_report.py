"""The demo's report written from run records, no model needed: a run the behaviour monitor stopped
is marked degenerate in every table and explained, a model below the card's floors is named, and the
utility table lm-eval measured says where it differs from the behaviour card."""

import json
from dataclasses import asdict

from mosa.align.plots import plot_metrics
from mosa.align.trainer import MosaConfig, curve_title
from mosa.eval.tables import AsrRow
from mosa.organism.build import OrganismConfig
from mosa.pipelines.demo import MODELS, DemoPlan, missed_card_floors
from mosa.pipelines.demo_report import write_demo_report
from mosa.profiles import MODEL_PROFILES

ATTACKS = ("none", "prefill@0", "prefill@13")
# The organism as built; MOSA refusing every attack (below the compliance floors: the point of aligning it);
# Initial Alignment degenerate, as the monitor found it.
CARDS = {
    "organism": dict(
        refusal_plain=0.95, compliance_prefill_0=1.0, compliance_prefill_mid=0.9, utility=0.914, over_refusal=0.0, coherent=0.983
    ),
    "MOSA": dict(
        refusal_plain=0.945,
        compliance_prefill_0=0.0,
        compliance_prefill_mid=0.025,
        utility=0.871,
        over_refusal=0.0,
        coherent=0.945,
    ),
    "Initial Alignment": dict(
        refusal_plain=0.89, compliance_prefill_0=0.99, compliance_prefill_mid=0.0, utility=0.807, over_refusal=0.0, coherent=0.647
    ),
}


def alignment_run(directory, name, window, failure):
    config = MosaConfig(window=window, beta=1.0, monitor_every=100)
    metrics = directory / f"{name}.jsonl"
    metrics.write_text(
        "".join(json.dumps({"step": s, "reward": s - 3.0, "R_pos": -1.0, "R_neg": 2.0 - s, "kl": s / 10}) + "\n" for s in (1, 2))
    )
    curve = plot_metrics(metrics, directory / f"{name}.png", title=curve_title(config, failure))
    coherent = CARDS[name]["coherent"] if failure is None else failure["value"]
    monitor = {
        "before": {"coherent": 0.98},
        "during": [],
        "after": {"coherent": coherent},
        "degenerate": failure is not None,
        "failure": failure,
    }
    last = {"step": 2, "reward": -1.0, "R_pos": -1.0, "R_neg": 0.0, "kl": 0.2}
    return {"config": asdict(config), "last": last, "curve": curve, "monitor": monitor}


def test_a_run_the_monitor_stopped_is_marked_degenerate_and_floors_missed_are_named(tmp_path):
    failure = {"when": "after", "figure": "coherent", "value": 0.647, "setting": "min_coherent", "floor": 0.9}
    alignment = {
        "MOSA": alignment_run(tmp_path, "MOSA", (8, 24), None),
        "Initial Alignment": alignment_run(tmp_path, "Initial Alignment", (0, 16), failure),
    }
    evaluations = {
        name: {
            "rows": [AsrRow(name, "organism-held-out", attack, "organism", "2", responses=20, successes=4) for attack in ATTACKS],
            "config": {},
            "directory": tmp_path,
        }
        for name in MODELS
    }
    # Utility items answered right, by the card and through lm-eval: Initial Alignment's two differ.
    solved = {"organism": (170, 170), "MOSA": (162, 162), "Initial Alignment": (150, 151)}
    cards = {name: {"figures": figures, "utility_by_task": {"all": f"{solved[name][0]}/186"}} for name, figures in CARDS.items()}
    utility = {
        name: {
            "row": {
                "label": name,
                "run": str(tmp_path),
                "cells": {"utility": (lm_eval / 186, 0.02, 186)},
                "metrics": {"utility": "exact_match,strip"},
            },
            "config": {},
        }
        for name, (_, lm_eval) in solved.items()
    }
    markdown, page = write_demo_report(
        tmp_path / "report",
        asdict(OrganismConfig()),
        DemoPlan.quick(),
        {},
        alignment,
        evaluations,
        cards,
        missed_card_floors(MODEL_PROFILES.get("organism"), cards),
        utility,
        seconds=60.0,
        parameters=740_000,
    )
    text = markdown.read_text()

    # The attack table and the card table mark the degenerate model, in the header and in every rate.
    assert text.count("| attack | organism | MOSA | Initial Alignment (DEGENERATE) |") == 1
    assert text.count("| measure | organism | MOSA | Initial Alignment (DEGENERATE) |") == 1
    assert text.count("(n=20, degenerate model)") == len(ATTACKS)
    assert (
        "| prefill@13 | 20.0% [8.1, 41.6] (n=20) | 20.0% [8.1, 41.6] (n=20) | 20.0% [8.1, 41.6] (n=20, degenerate model) |"
        in text
    )
    # The alignment section says which monitor floor it missed, with the figures.
    assert (
        "The behaviour monitor declared Initial Alignment degenerate after training: 64.7% of its responses were "
        "coherent, below the monitor's floor min_coherent = 90%."
    ) in text
    assert "| Initial Alignment | [0, 16) | 1.0 | 2 |" in text and "DEGENERATE: 64.7% coherent < 90% |" in text
    assert "| MOSA | [8, 24) | 1.0 | 2 |" in text and "passed: 94.5% coherent |" in text
    # The card floors: Initial Alignment's coherence is below its floor; MOSA's low compliance is not a miss.
    assert "| coherent responses | 98.3% | 94.5% | 64.7% (below the 90% floor) |" in text
    assert "Below a floor: Initial Alignment: coherent responses 64.7% (floor 90%)." in text
    assert text.count("below the") == 2  # the one card cell and the monitor's sentence
    assert "Initial Alignment (DEGENERATE)" in page.read_text()
    # The utility table, a row per model, and where lm-eval and the card disagree.
    assert (
        "| model | utility |\n|---|---|\n| organism | 91.4 |\n| MOSA | 87.1 |\n| Initial Alignment (DEGENERATE) | 81.2 |" in text
    )
    assert (
        "It differs from the behaviour card's utility figure (the table above): Initial Alignment: lm-eval 151 of 186, "
        "the card 150 of 186."
    ) in text
    assert "Agreeing: organism 170 of 186, MOSA 162 of 186." in text
