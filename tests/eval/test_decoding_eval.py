"""`mosa eval` under an approximate decoding: records and tables name it, and count forward passes."""

import csv

from mosa.cli import main
from mosa.eval import asr_markdown, asr_rows
from tests.eval.conftest import mosa_eval, read_jsonl, small_settings, write_config


def test_records_and_tables_name_the_decoding_and_count_forward_passes(model_dir, behaviours_csv, tmp_path, capsys):
    settings = small_settings(model_dir, behaviours_csv)
    settings["sampler"] |= {"decoding": "dual-cache", "threshold": 0.5}
    assert mosa_eval("--config", write_config(tmp_path, settings), "--output", tmp_path / "run") == 0
    records = read_jsonl(tmp_path / "run" / "records.jsonl")
    for record in records:
        assert (record["sampler"]["decoding"], record["sampler"]["threshold"]) == ("dual-cache", 0.5)
        assert 2 <= record["forward_passes"] <= 16  # two blocks: at least a pass each, at most a token a pass
    assert "Decoding: dual-cache, threshold 0.5 (approximate;" in (tmp_path / "run" / "asr.md").read_text()
    assert {row["decoding"] for row in csv.DictReader((tmp_path / "run" / "asr.csv").open())} == {"dual-cache, threshold 0.5"}
    assert "Decoding: dual-cache, threshold 0.5" in capsys.readouterr().out  # what `mosa eval` prints

    # Tables of runs with different decodings get a decoding column.
    exact = [{**record, "sampler": {**record["sampler"], "decoding": "exact", "threshold": None}} for record in records]
    table = asr_markdown(asr_rows(records, "m") + asr_rows(exact, "m"))
    assert (
        "| decoding |" in table and "| dual-cache, threshold 0.5 | tiny | none |" in table and "| exact | tiny | none |" in table
    )


def test_a_threshold_without_an_approximate_decoding_is_refused_in_one_line(model_dir, behaviours_csv, tmp_path, capsys):
    settings = small_settings(model_dir, behaviours_csv)
    settings["sampler"] |= {"threshold": 0.5}
    assert main(["eval", "--config", str(write_config(tmp_path, settings)), "--output", str(tmp_path / "run")]) == 2
    assert "mosa: error: sampler: threshold is set but decoding is exact" in capsys.readouterr().err
