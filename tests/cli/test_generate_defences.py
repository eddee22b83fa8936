"""`mosa generate --defence`: a defence by name with its options, recorded with what it did."""

import json

import pytest

from mosa.cli import main
from mosa.models.build import save_model
from tests.conftest import tiny_llama


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    return save_model(tiny_llama(tokenizer, seed=1), tmp_path_factory.mktemp("model") / "tiny")


def test_generate_takes_defences_and_records_what_they_did(checkpoint, tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    base = ["generate", "--model", str(checkpoint), "--prompt", "hello world", "--gen-length", "16", "--steps", "16"]
    base += ["--block-length", "8", "--output", str(output)]
    assert main([*base, "--defence", "eos-monitor:threshold=0,reduce=max", "--defence", "annealed-remasking"]) == 0
    (record,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert record["defences"] == "eos-monitor(threshold=0, reduce=max) + annealed-remasking(alpha0=0.3)"
    assert record["defence_events"]["eos-monitor"]["step"] == 0  # any EOS probability exceeds 0 at the first step
    assert "[eos-monitor ended the response at step 0" in capsys.readouterr().out
    assert main(base) == 0
    (record,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert (record["defences"], record["defence_events"]) == ("none", {})


@pytest.mark.parametrize(
    "spec, message",
    [
        ("shield", "unknown defence 'shield'; available: annealed-remasking, eos-monitor"),
        ("eos-monitor:threshold", "--defence 'eos-monitor:threshold' must look like NAME or NAME:OPTION=VALUE"),
        ("eos-monitor:limit=2", "defence eos-monitor: unknown options limit; known: threshold, reduce"),
    ],
)
def test_bad_defences_are_refused_before_loading(checkpoint, spec, message, capsys):
    assert main(["generate", "--model", str(checkpoint), "--prompt", "hi", "--defence", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mosa: error: {message}") and "\n" not in err  # one line, before any model loads
