"""The demo end to end on the small test organism, with tiny counts: every stage runs, the report holds
the side-by-side, and a second run reuses every stage."""

from dataclasses import replace

from mosa.report.demo import MODELS, DemoPlan, run_demo


def test_the_demo_writes_a_report_and_a_second_run_reuses_every_stage(small_organism, tmp_path):
    plan = replace(DemoPlan.quick(), prefill_prompts=6, gcg_behaviours=1, gcg_iterations=2, order_prompts=6, eval_prompts=6,
                   card_prompts=6)
    assert plan.organism["hidden_size"] == small_organism.config.hidden_size  # the same build: reused, not rebuilt
    messages = []
    page = run_demo(tmp_path / "demo", plan, progress=False, log=messages.append)
    document = page.read_text()
    for name in MODELS:
        assert name in document
    for attack in ("none", "prefill@0", "prefill@13", "pad", "dija", "anchor", "dialogue", "prefix-forcing"):
        assert f"<td>{attack}</td>" in document
    assert document.count("data:image/png;base64,") == 5  # three analyses, two reward curves
    assert "small-model results" in document and "Full configuration" in document
    markdown = (tmp_path / "demo" / "report.md").read_text()
    assert "| prefill@13 |" in markdown and (tmp_path / "demo" / "figures" / "decode-order.png").is_file()

    adapter = tmp_path / "demo" / "align" / "mosa" / "adapter" / "adapter_model.safetensors"
    written = adapter.stat().st_mtime_ns
    messages.clear()
    run_demo(tmp_path / "demo", plan, progress=False, log=messages.append)
    assert adapter.stat().st_mtime_ns == written  # not trained again
    assert any("nothing to do" in message for message in messages)  # the evaluations were complete
