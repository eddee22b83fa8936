"""The demo end to end on the small test organism, with tiny counts: every stage runs, the report holds
the side-by-side and the utility table lm-eval measured, a run the behaviour monitor stops is evaluated
and marked degenerate, and a second run reuses every stage."""

import json
from dataclasses import replace

from mosa import progress
from mosa.align import trainer
from mosa.align.plots import plot_metrics
from mosa.organism.plugin import OrganismProfile
from mosa.pipelines.demo import MODELS, DemoPlan, run_demo
from mosa.profiles import MODEL_PROFILES


def scripted_monitor(profile, model: str, progress: bool):
    """The organism's monitor measures a behaviour card per call (minutes on a busy CPU); this one answers at
    once, and finds Initial Alignment degenerate after training."""
    coherent = iter([0.98, 0.95, 0.98, 0.5])  # MOSA before and after training, then Initial Alignment's
    return (lambda lm: {"coherent": next(coherent)}), {"harmful": None}


def test_the_demo_writes_a_report_and_a_second_run_reuses_every_stage(small_organism, tmp_path, capfd, caplog, monkeypatch):
    plan = replace(
        DemoPlan.quick(), prefill_prompts=6, gcg_behaviours=1, gcg_iterations=2, order_prompts=6, eval_prompts=6, card_prompts=6
    )
    assert MODEL_PROFILES.get("organism").build_directory(plan.organism) == small_organism.path  # reused, not rebuilt
    monkeypatch.setattr(OrganismProfile, "monitor", scripted_monitor)
    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)  # every phase, however short, writes its lines
    titles = []  # each run's reward curve, as the trainer titles it
    monkeypatch.setattr(
        trainer,
        "plot_metrics",
        lambda metrics, png, title, **options: titles.append(title) or plot_metrics(metrics, png, title, **options),
    )
    messages = []
    page = run_demo(tmp_path / "demo", plan, progress=True, log=messages.append)
    # stderr is captured, not a terminal, as in `mosa demo > log 2>&1`: progress comes as lines, not redraws.
    progress_log = capfd.readouterr().err
    assert "\r" not in progress_log and "behaviour card:" in progress_log and "mosa:" in progress_log
    assert not any("Custom kwargs" in record.getMessage() for record in caplog.records)  # lm-eval's hint to its CLI's users
    assert [title.split(":")[0] for title in titles] == ["MOSA", "Initial Alignment"]
    assert "window [8, 24) of 32" in titles[0] and "window [0, 16) of 32" in titles[1] and "stopped after training" in titles[1]
    # The degenerate run is evaluated like the others, and said to be degenerate in the log and the report.
    assert any(message.startswith("      Initial Alignment: DEGENERATE. The behaviour monitor declared") for message in messages)
    document = page.read_text()
    # Marked in the attack table's and the card's headers, and in the utility table's row.
    assert document.count("Initial Alignment (DEGENERATE)") == 3 and "MOSA (DEGENERATE)" not in document
    assert "degenerate model)" in document
    for name in MODELS:
        assert name in document
    for attack in ("none", "prefill@0", "prefill@13", "pad", "dija", "anchor", "dialogue", "prefix-forcing"):
        assert f"<td>{attack}</td>" in document
    assert document.count("data:image/png;base64,") == 5  # three analyses, two reward curves
    assert "small-model results" in document and "Full configuration" in document
    markdown = (tmp_path / "demo" / "report.md").read_text()
    assert "| prefill@13 |" in markdown and (tmp_path / "demo" / "figures" / "decode-order.png").is_file()
    results = check_utility_table(tmp_path / "demo", markdown)

    adapter = tmp_path / "demo" / "align" / "mosa" / "adapter" / "adapter_model.safetensors"
    written = adapter.stat().st_mtime_ns
    messages.clear()
    run_demo(tmp_path / "demo", plan, progress=False, log=messages.append)
    assert adapter.stat().st_mtime_ns == written  # not trained again
    assert {path: path.stat().st_mtime_ns for path in results} == results  # lm-eval not run again
    assert sum("utility through lm-evaluation-harness" in message and message.endswith("(reused)") for message in messages) == 3
    assert any("nothing to do" in message for message in messages)  # the evaluations were complete
    assert any("Initial Alignment: DEGENERATE" in message for message in messages)  # read back from its monitor.json


def check_utility_table(demo, markdown: str) -> dict:
    """The report's utility table shows, for each model, the figure in lm-eval's own results file, on every
    utility item, and says it agrees with the model's behaviour card in counts of items; returns the
    results files with their modification times."""
    cards = json.loads((demo / "cards.json").read_text())
    assert "| model | utility |" in markdown and "Metrics: utility: exact_match,strip. Items: utility: 186." in markdown
    files = {}
    for name in MODELS:
        (results,) = (demo / "utility" / name.lower().replace(" ", "-") / "tasks" / "utility").glob("*/results_*.json")
        files[results] = results.stat().st_mtime_ns
        found = json.loads(results.read_text())
        value = found["results"]["mosa_organism_utility"]["exact_match,strip"]
        items = found["n-samples"]["mosa_organism_utility"]["effective"]
        label = "Initial Alignment (DEGENERATE)" if name == "Initial Alignment" else name
        assert f"| {label} | {100 * value:.1f} |" in markdown
        assert items == 186 and round(value * items) == round(cards[name]["figures"]["utility"] * items)
        assert f"{name} {round(value * items)} of 186" in markdown
    assert "It agrees with each behaviour card's utility figure (the table above): organism " in markdown
    return files
