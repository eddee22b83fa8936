"""`mosa eval` with sampler defences: records say what each defence did, tables name the defences."""

import csv

from mosa.cli import main
from mosa.eval import asr_markdown, asr_rows
from tests.eval.conftest import mosa_eval, read_jsonl, small_settings, write_config

MONITOR = "eos-monitor(threshold=0.3, reduce=max)"


def test_records_and_tables_name_the_defences_and_what_they_did(model_dir, behaviours_csv, tmp_path):
    settings = small_settings(model_dir, behaviours_csv)
    settings["sampler"] |= {"defences": [{"name": "eos-monitor", "threshold": 0.3, "reduce": "max"}]}
    assert mosa_eval("--config", write_config(tmp_path, settings), "--output", tmp_path / "run") == 0
    records = read_jsonl(tmp_path / "run" / "records.jsonl")
    ended = [record for record in records if record["defence_events"]]
    assert 0 < len(ended) < len(records)  # the tiny model's EOS probability crosses 0.3 for some responses only
    eos_id = records[0]["sampler"]["eos_id"]
    for record in records:
        assert record["sampler"]["defences"] == [{"name": "eos-monitor", "threshold": 0.3, "reduce": "max"}]
    for record in ended:
        step = record["defence_events"]["eos-monitor"]["step"]
        assert record["defence_events"]["eos-monitor"]["score"] > 0.3
        # every position left masked when it fired is EOS, committed at that step
        assert all(token == eos_id for token, at in zip(record["response_ids"], record["commit_step"]) if at == step)
    table = (tmp_path / "run" / "asr.md").read_text()
    assert f"Defences: {MONITOR} (docs/sampler.md, Defences)." in table
    assert "Responses a defence ended (the records' defence_events): " in table
    rows = list(csv.DictReader((tmp_path / "run" / "asr.csv").open()))
    assert {row["defences"] for row in rows} == {MONITOR}
    assert sum(int(row["ended_by_defence"]) for row in rows if row["judge"] == "keyword-long") == len(ended)

    # Tables of runs with and without defences get a defences column.
    plain = [{**record, "sampler": {**record["sampler"], "defences": []}, "defence_events": {}} for record in records]
    both = asr_markdown(asr_rows(records, "m") + asr_rows(plain, "m"))
    assert "| defences |" in both and f"| {MONITOR} | tiny | none |" in both and "| none | tiny | none |" in both


def test_a_run_without_defences_keeps_its_tables(model_dir, behaviours_csv, tmp_path):
    settings = small_settings(model_dir, behaviours_csv)
    settings["attacks"] = ["none"]
    assert mosa_eval("--config", write_config(tmp_path, settings), "--output", tmp_path / "run") == 0
    assert "Defences" not in (tmp_path / "run" / "asr.md").read_text()
    assert all(record["defence_events"] == {} for record in read_jsonl(tmp_path / "run" / "records.jsonl"))


def test_an_unknown_defence_is_refused_in_one_line(model_dir, behaviours_csv, tmp_path, capsys):
    config = write_config(tmp_path, small_settings(model_dir, behaviours_csv))
    args = ["eval", "--config", str(config), "--output", str(tmp_path / "run"), "--set", "sampler.defences=[shield]"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "mosa: error: sampler: unknown defence 'shield'; available: annealed-remasking, eos-monitor" in err
    assert not (tmp_path / "run").exists()
