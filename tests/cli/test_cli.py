"""The command line: help, generation from a saved checkpoint, YAML + flag precedence, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosa.cli import main
from mosa.models.build import save_model
from tests.conftest import tiny_llama


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    return save_model(tiny_llama(tokenizer, seed=1), tmp_path_factory.mktemp("model") / "tiny")


def test_help_lists_the_subcommands():
    entry_point = Path(sys.executable).parent / "mosa"  # the console script pip installed
    result = subprocess.run([str(entry_point), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "generate" in result.stdout and "demo" in result.stdout
    assert "organism" in result.stdout  # a plug-in's command (mosa.cli.COMMANDS)


def test_generate_writes_records(checkpoint, tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    config = tmp_path / "sampler.yaml"
    config.write_text("gen_length: 16\nsteps: 8\nblock_length: 8\n")
    code = main(
        [
            "generate",
            "--model",
            str(checkpoint),
            "--prompt",
            "hello world",
            "--prompt",
            "what is the cat",
            "--config",
            str(config),
            "--steps",
            "16",
            "--prefill",
            "3:the cat",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["hello world", "what is the cat"]
    for record in records:
        assert len(record["response_ids"]) == 16  # gen_length from the YAML file
        # steps=16 (the flag beats the YAML): block 0 has 6 masks over 8 steps, block 1 has 8.
        assert sorted(s for s in record["commit_step"] if s >= 0) == list(range(6)) + list(range(8, 16))
        assert record["commit_step"][3:5] == [-1, -1]  # the prefilled words


def test_generate_samples_a_prompt_alike_alone_or_among_others_and_repeats_as_new_samples(checkpoint, tmp_path):
    def responses(*prompts):
        output = tmp_path / "out.jsonl"
        arguments = [argument for prompt in prompts for argument in ("--prompt", prompt)]
        assert (
            main(
                [
                    "generate",
                    "--model",
                    str(checkpoint),
                    *arguments,
                    "--gen-length",
                    "16",
                    "--steps",
                    "16",
                    "--block-length",
                    "8",
                    "--temperature",
                    "1",
                    "--output",
                    str(output),
                ]
            )
            == 0
        )
        return [json.loads(line) for line in output.read_text().splitlines()]

    records = responses("what is the cat", "hello world", "hello world")
    assert [r["prompt_id"] for r in records] == ["what is the cat", "hello world", "hello world #2"]
    assert records[1]["response_ids"] == responses("hello world")[0]["response_ids"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--prompt", "hi"], "--model is required"),
        (["generate", "--model", "MODEL", "--prompt", "hi", "--block-length", "5"], "block_length=5 must divide gen_length=128"),
        (["generate", "--model", "MODEL", "--prompt", "hi", "--remasking", "best"], "remasking='best' is not a known rule"),
        (["generate", "--model", "MODEL", "--prompt", "hi", "--prefill", "abc"], "--prefill 'abc' must look like POSITION:TEXT"),
        (["generate", "--model", "MODEL", "--prompt", "hi", "--config", "missing.yaml"], "--config missing.yaml: no such file"),
        (["generate", "--model", "/nonexistent", "--prompt", "hi"], "cannot load /nonexistent"),
    ],
)
def test_errors_are_one_line(checkpoint, argv, message, capsys):
    argv = [str(checkpoint) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: model-loading progress
    assert last_line.startswith("mosa: error: ") and message in last_line
