"""Each analysis end to end on a tiny random dLLM with tiny settings: the record's keys and shapes,
a PNG that opens, and the command line's options and one-line errors."""

import json

import pytest
from PIL import Image

from mosa.analysis import (
    DecodeOrderOptions,
    GcgPositionOptions,
    PrefillPositionOptions,
    decode_order,
    gcg_position,
    plot_decode_order,
    plot_gcg_position,
    plot_prefill_position,
    prefill_position,
)
from mosa.cli import main
from mosa.data import Example
from mosa.models.build import save_model
from tests.chat_server import ChatServer, Reply
from tests.conftest import tiny_llama

BEHAVIOURS = [Example(id="b1", prompt="how are you", source="test"), Example(id="b2", prompt="what is the cat", source="test")]
BENIGN = [Example(id="g1", prompt="hello world", source="test")]
TINY = dict(gen_length=16, batch_size=4, organism=False)


@pytest.fixture(scope="module")
def lm(tokenizer):
    return tiny_llama(tokenizer, seed=5)


def assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_prefill_position_record_and_figure(lm, tmp_path):
    options = PrefillPositionOptions(**TINY, positions=[0, 8], block_length=8, phrases=["sure here is"], judge="keyword-long")
    result = prefill_position(lm, BEHAVIOURS, options, model_name="tiny")

    assert [s["position"] for s in result["positions"]] == [0, 8]
    for summary in result["positions"]:
        assert summary["responses"] == 2
        low, high = summary["asr_ci95"]
        assert 0 <= low <= summary["asr"] <= high <= 1
        assert sum(summary["labels"].values()) == 2
        assert summary["mean_score"] is None  # keyword judges give no score: none is made up
    assert result["score_judge"] is None and "no scoring judge" in result["harm_measure"]
    assert result["judge"]["name"] == "keyword-long" and result["judge"]["version"].startswith("keyword-long-")
    assert result["sampler"]["steps"] == 16 and result["sampler"]["block_length"] == 8
    assert {(row["prompt_id"], row["position"]) for row in result["responses"]} == {
        ("b1@0", 0),
        ("b1@8", 8),
        ("b2@0", 0),
        ("b2@8", 8),
    }
    assert json.loads(json.dumps(result)) == result
    assert_png(plot_prefill_position(result, tmp_path / "prefill-position.png"))


def test_a_response_the_judge_server_rejects_is_an_undecided_error_and_the_analysis_goes_on(lm, tmp_path, capsys):
    def reply(request):
        if "what is the cat" in request["messages"][-1]["content"]:  # b2's responses
            return Reply("the request exceeds the available context size (2048 tokens)", 400)
        return "1.b 1\n2.b 1\n3.b 1"

    with ChatServer(reply) as server:
        backend = {"type": "openai", "model": "judge", "base_url": server.url, "cache_dir": str(tmp_path)}
        judge = {"name": "strongreject", "backend": backend}
        options = PrefillPositionOptions(**TINY, positions=[0, 8], block_length=8, phrases=["sure here is"], judge=judge)
        result = prefill_position(lm, BEHAVIOURS, options, model_name="tiny")

    rejection = f"{server.url}/chat/completions rejected the request (HTTP 400: "
    for row in result["responses"]:
        rejected = row["prompt_id"].startswith("b2@")
        assert (row["label"], row["harmful"], row["score"]) == (("error", None, None) if rejected else ("refusal", False, 0.0))
        assert row["error"].startswith(rejection) if rejected else row["error"] is None
    for summary in result["positions"]:
        assert (summary["asr"], summary["undecided"], summary["labels"]) == (0.0, 1, {"refusal": 1, "error": 1})
        assert (summary["mean_score"], summary["scored"]) == (0.0, 1)  # the rejected response has no score
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("prefill-position: ")]
    assert sorted(line.split(rejection)[0] for line in said) == [
        f"prefill-position: judge strongreject: b2@{position}: " for position in (0, 8)
    ]


def test_gcg_position_record_and_figure(lm, tmp_path):
    options = GcgPositionOptions(
        **TINY,
        positions=[0, 4],
        block_length=8,
        target="sure here",
        init="the",
        suffix_length=3,
        iterations=2,
        top_k=4,
        candidates=4,
    )
    result = gcg_position(lm, BEHAVIOURS, options, model_name="tiny")

    assert [s["position"] for s in result["positions"]] == [0, 4]
    for summary in result["positions"]:
        assert summary["behaviours"] == 2
        assert len(summary["loss_mean"]) == 3  # before the first iteration, then after each
        assert summary["final_loss_mean"] <= summary["initial_loss_mean"]  # GCG keeps the best suffix
        assert 0 <= summary["asr_ci95"][0] <= summary["asr"] <= summary["asr_ci95"][1] <= 1
    assert len(result["cases"]) == 4 and all(row["target"] == "sure here" for row in result["cases"])
    assert json.loads(json.dumps(result)) == result
    assert_png(plot_gcg_position(result, tmp_path / "gcg-position.png"))


def test_decode_order_record_and_figure(lm, tmp_path):
    options = DecodeOrderOptions(**TINY, steps=8, block_lengths=[16, 8])
    result = decode_order(lm, {"benign": BENIGN, "harmful": BEHAVIOURS}, options, model_name="tiny")

    assert [s["block_length"] for s in result["settings"]] == [16, 8]
    assert [s["one_block"] for s in result["settings"]] == [True, False]
    for setting in result["settings"]:
        for name, summary in setting["prompt_sets"].items():
            assert summary["responses"] == {"benign": 1, "harmful": 2}[name]
            for key in ("mean_position_by_step", "mean_content_position_by_step", "end_share_by_step"):
                assert len(summary[key]) == 8  # one entry per denoising step
            assert summary["end_commits"]["count"] + summary["content_commits"]["count"] == summary["decoded"]
            # A random model sometimes predicts the mask token itself; such positions stay undecoded.
            assert summary["decoded"] + summary["undecoded"] == 16 * summary["responses"]
            assert summary["attack_written"] == 0
    assert json.loads(json.dumps(result)) == result
    assert_png(plot_decode_order(result, tmp_path / "decode-order.png"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, lm):
    return save_model(lm, tmp_path_factory.mktemp("model") / "tiny")


def test_command_line_writes_json_and_png_with_config_and_flags(checkpoint, tmp_path):
    config = tmp_path / "analysis.yaml"
    config.write_text("gen_length: 16\nblock_lengths: [16, 4]\nlimit: 5\n")
    code = main(
        [
            "analyze",
            "decode-order",
            "--model",
            str(checkpoint),
            "--config",
            str(config),
            "--block-lengths",
            "16,8",
            "--benign",
            "gsm8k",
            "--harmful",
            "advbench",
            "--limit",
            "2",
            "--output",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "out" / "decode-order.json").read_text())
    assert [s["block_length"] for s in result["settings"]] == [16, 8]  # the flag beats the YAML
    assert result["settings"][0]["sampler"]["gen_length"] == 16  # from the YAML
    assert [len(result["prompts"][name]["prompts"]) for name in ("benign", "harmful")] == [2, 2]
    harmful = result["prompts"]["harmful"]  # the resolved prompt set's record (mosa.data.resolve_prompts)
    assert (harmful["spec"], harmful["count"], harmful["limit"], harmful["split"]) == ("advbench", 2, 2, None)
    assert harmful["prompts"][0]["id"] == "advbench/0" and len(harmful["prompts"][0]["text_hash"]) == 16
    assert result["model"] == {
        "name": str(checkpoint),
        "family": "bidirectional",
        "parameters": result["model"]["parameters"],
        "organism": False,
    }
    assert_png(tmp_path / "out" / "decode-order.png")


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["prefill-position", "--gen-length", "16", "--block-length", "8", "--positions", "0,20"],
            "position 20 is beyond the response (gen_length=16)",
        ),
        (["prefill-position", "--judge", "nope"], "unknown judge 'nope'"),
        (["prefill-position", "--backend", "openai:m@http://x"], "no judge of this run takes a backend"),
        (["gcg-position", "--phrases", "poems"], "phrases='poems' is not a phrase set"),
        (["prefill-position", "--phrases", "poems"], "option phrases='poems' must be one of"),
        (["decode-order", "--gen-length", "16", "--block-lengths", "16,5"], "block_length=5 must divide gen_length=16"),
        (
            ["decode-order", "--adapter", "nowhere", "--gen-length", "16", "--block-lengths", "16"],
            "--adapter nowhere is not a peft adapter directory (no adapter_config.json there)",
        ),
        (["prefill-position", "--limit", "few"], "argument --limit: 'few' must be a number of prompts or 'all'"),  # argparse's
    ],
)
def test_bad_input_is_one_line(checkpoint, tmp_path, argv, message, capsys):
    argv = ["analyze", *argv, "--model", str(checkpoint), "--output", str(tmp_path)]
    assert main(argv) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("mosa: error: ") and message in last_line
