"""`mosa data list` and `mosa data show`, and their one-line errors."""

import json

from mosa.cli import main


def test_list_shows_each_dataset_where_it_resolves_from_and_its_rows(shared_data, capsys):
    assert main(["data", "list"]) == 0
    captured = capsys.readouterr()
    lines = {line.split()[0]: line for line in captured.out.splitlines()}
    assert lines["dataset"].split() == ["dataset", "rows", "from", "path"]
    expected = {
        "advbench": "520",
        "harmbench": "159 (standard)",
        "harmbench-val": "41 (standard)",
        "strongreject": "313",
        "strongreject-small": "60",
        "donotanswer": "939",
        "gsm8k": "100",
        "mmlu": "14042",
        "humaneval": "164",
    }
    for name, rows in expected.items():
        assert f" {rows}  $MOSA_DATA_DIR  {shared_data}/" in lines[name], lines[name]
    # MMLU's stray headers are reported as one line each, not as a Python warning with a traceback line.
    assert (
        captured.err.strip()
        == f"mosa: warning: {shared_data / 'mmlu' / 'mmlu.jsonl'}: dropped 2 stray header rows (line 11777, line 12794)"
    )


def test_list_with_nothing_pulled(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path / "empty")]) == 0
    captured = capsys.readouterr()
    assert all("not found" in line for line in captured.out.splitlines()[1:])
    assert "run `mosa data pull`, or set MOSA_DATA_DIR" in captured.err


def test_show_prints_json_lines(shared_data, capsys):
    assert main(["data", "show", "harmbench", "--n", "2", "--functional", "contextual"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    assert set(records[0]) == {"id", "prompt", "source", "category", "target", "meta"}
    assert records[0]["meta"]["functional_category"] == "contextual" and "\n\n---\n\n" in records[0]["prompt"]
    assert main(["data", "show", "gsm8k"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # --n defaults to 3


def test_show_a_local_file_reports_dropped_rows(tmp_path, capsys):
    path = tmp_path / "mine.csv"
    path.write_text("text\nhello\nhello\n\nbye\n")
    assert main(["data", "show", str(path), "--column", "text", "--n", "0"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["prompt"] for line in captured.out.splitlines()] == ["hello", "bye"]
    assert captured.err.strip() == f"mosa: warning: {path}: dropped 1 duplicate row (row 2)"


def test_errors_are_one_line(tmp_path, capsys):
    cases = [
        (
            ["data", "show", "harmbnech"],
            "mosa: error: unknown dataset 'harmbnech'; known: advbench, harmbench, harmbench-val, strongreject, "
            "strongreject-small, donotanswer, gsm8k, mmlu, humaneval; or give the path of a local file",
        ),
        (["data", "show", "mmlu", "--data-dir", str(tmp_path)], "mosa: error: dataset 'mmlu' not found (looked in: data_dir "),
        (["data", "show", "gsm8k", "--n", "-1"], "mosa: error: --n -1 must be 0 (all) or more"),
        (["data", "show", str(tmp_path / "x.csv")], f"mosa: error: {tmp_path / 'x.csv'}: no such file or folder"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith(expected), err
