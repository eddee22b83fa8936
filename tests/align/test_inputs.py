"""What a `mosa align` run is made of (inputs.json: the model's content fingerprint, the prompt sets, the
tokenised sentences), copied into its adapter, and a resume on other inputs refused in one line."""

import json

from mosa.cli import main
from mosa.models.build import save_model
from tests.conftest import tiny_llama

SETTINGS = [
    "response_length=8",
    "window=[0, 8]",
    "max_steps=2",
    "batch_size=2",
    "lora_r=2",
    "save_every=1",
    "min_coherent=0",
    "safe_sentences=[cannot answer this question]",
    "harmful_sentences=[sure here]",
]


def align(model, output, prompts="advbench:train", *extra):
    return main(
        [
            "align",
            "--preset",
            "organism",
            "--model",
            str(model),
            "--prompts",
            prompts,
            "--output",
            str(output),
            "--quiet",
            "--config",
            str(output.parent / "no-monitor.yaml"),
            *[a for s in SETTINGS for a in ("--set", s)],
            *extra,
        ]
    )


def test_a_run_records_its_inputs_and_refuses_to_resume_on_others(tokenizer, tmp_path, capsys):
    (tmp_path / "no-monitor.yaml").write_text("monitor: false\n")
    model = save_model(tiny_llama(tokenizer), tmp_path / "model")
    run = tmp_path / "run"
    assert align(model, run) == 0
    inputs = json.loads((run / "inputs.json").read_text())
    assert inputs["model"]["content"] and inputs["model"]["path"] == str(model.resolve())
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(inputs["model"]["files"])
    assert (inputs["prompts"]["spec"], inputs["prompts"]["split"]["part"]) == ("advbench:train", "train")
    assert inputs["sentences"]["safe"][0]["tokens"] == ["cannot", "answer", "this", "question", "<|endoftext|>"]
    assert json.loads((run / "adapter" / "inputs.json").read_text()) == inputs  # what mosa eval checks against

    assert align(model, run, "advbench:eval", "--resume") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's loading bars
    assert f"{run} was run on other inputs (prompts: {inputs['prompts']['count']} prompts" in error

    save_model(tiny_llama(tokenizer, seed=4), model)  # same architecture, other weights
    assert align(model, run, "advbench:train", "--resume") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(
        f"mosa: error: {run} was run on other inputs (model: the content of {model} changed "
        "(model.safetensors)); resume it with its own model, prompts and sentences, or start a new --output"
    )
