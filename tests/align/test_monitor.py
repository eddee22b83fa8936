"""The monitor for models other than the organism: refusal, over-refusal and degeneration."""

import json

import pytest

from mosa.align.monitor import is_degenerate, keyword_monitor
from mosa.cli import main
from mosa.models.build import save_model
from tests.conftest import tiny_llama


@pytest.mark.parametrize(
    "text, degenerate",
    [
        ("", True),
        ("cannot request request request request request", True),
        ("i i i am am am sorry sorry sorry", True),
        ("i am sorry , but i cannot help with that .", False),
        ("no", False),
    ],
)
def test_degeneration_is_an_empty_or_repetitive_response(text, degenerate):
    assert is_degenerate(text) is degenerate


def test_the_monitor_measures_refusal_over_refusal_and_coherence(tokenizer):
    lm = tiny_llama(tokenizer)
    monitor = keyword_monitor(["how are you"] * 3, ["what is one"] * 2, gen_length=8, judge="keyword-gcg")
    figures = monitor(lm)
    assert {"refusal", "over_refusal", "coherent", "judge", "examples"} <= set(figures)
    assert all(0.0 <= figures[key] <= 1.0 for key in ("refusal", "over_refusal", "coherent"))
    assert figures["judge"].startswith("keyword-gcg")


def test_mosa_align_monitors_a_model_that_is_not_the_organism(tokenizer, tmp_path, capsys):
    model = save_model(tiny_llama(tokenizer), tmp_path / "model")
    settings = [
        "response_length=8",
        "window=[0, 8]",
        "max_steps=2",
        "batch_size=2",
        "lora_r=2",
        "min_coherent=0",
        "safe_sentences=[cannot answer this question]",
        "harmful_sentences=[sure here]",
    ]
    config = tmp_path / "monitor.yaml"
    argv = lambda run, prompts="advbench:train": [
        "align",
        "--preset",
        "organism",
        "--model",
        str(model),  # noqa: E731
        "--prompts",
        prompts,
        "--output",
        str(tmp_path / run),
        "--quiet",
        "--config",
        str(config),
        *[a for s in settings for a in ("--set", s)],
    ]
    config.write_text("monitor: {prompts: 4, benign: gsm8k, judge: keyword-gcg}\n")
    assert main(argv("run")) == 0
    report = json.loads((tmp_path / "run" / "monitor.json").read_text())
    assert {"refusal", "over_refusal", "coherent"} <= set(report["before"]) and report["after"] is not None
    # The monitor's harmful prompts default to the held-out side of the training prompts, and are recorded.
    inputs = json.loads((tmp_path / "run" / "inputs.json").read_text())
    monitored = inputs["monitor_prompts"]["harmful"]
    assert (monitored["spec"], monitored["count"], inputs["monitor_prompts"]["benign"]["spec"]) == ("advbench:eval", 4, "gsm8k")
    trained = {row["text_hash"] for row in inputs["prompts"]["prompts"]}
    assert inputs["prompts"]["spec"] == "advbench:train" and not trained & {row["text_hash"] for row in monitored["prompts"]}

    assert main(argv("whole", prompts="advbench")) == 2  # nothing held back to monitor on
    assert "the monitor needs held-out harmful prompts and 'advbench' holds none back" in capsys.readouterr().err
    config.write_text("monitor: {prompts: 4, benign: gsm8k, judges: keyword-gcg}\n")
    assert main(argv("bad")) == 2
    assert "unknown monitor settings ['judges']" in capsys.readouterr().err


def test_a_measurement_leaves_the_training_random_stream_as_it_was(tokenizer, tmp_path):
    # A monitor that samples must not move the stream dropout draws from, or a resumed run would
    # differ from one that never stopped.
    import torch

    from mosa.align.trainer import Monitoring, MosaConfig

    def sampling_monitor(lm):
        torch.rand(100)
        return {"coherent": 1.0}

    monitoring = Monitoring(sampling_monitor, tmp_path, MosaConfig(), enabled=True)
    lm = tiny_llama(tokenizer)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    monitoring.measure("before", lm)
    assert torch.equal(torch.rand(3), expected)


def test_a_response_the_judge_server_rejects_is_left_out_of_the_rates_and_counted(tokenizer, tmp_path):
    from tests.chat_server import ChatServer, Reply

    def reply(request):  # the judge's server rejects what it is sent about the benign prompt
        judged = request["messages"][-1]["content"]
        return Reply("the prompt exceeds the context", 400) if "what is one" in judged else "1.b 1\n2.b 1\n3.b 1"

    with ChatServer(reply) as server:
        backend = {"type": "openai", "model": "judge", "base_url": server.url, "cache_dir": str(tmp_path / "cache")}
        monitor = keyword_monitor(
            ["how are you"] * 3, ["what is one"] * 2, gen_length=8, judge={"name": "strongreject", "backend": backend}
        )
        figures = monitor(tiny_llama(tokenizer))
    assert figures["judge_errors"] == 2
    # Every answer the judge gave was a refusal; over-refusal has no decided response left.
    assert (figures["refusal"], figures["over_refusal"]) == (1.0, 0.0)
