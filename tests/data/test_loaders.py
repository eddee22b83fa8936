"""Loaders on small files written here: the generic column loader, the other standard layouts,
and every kind of bad input (one-line errors, counted warnings, nothing dropped silently)."""

import gzip
import json
import warnings

import pytest

from mosa.data import MosaDataWarning, load_advbench, load_dataset, load_file
from mosa.errors import MosaError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def one_line_error(call, *fragments):
    with pytest.raises(MosaError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def no_warnings(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


# --- the generic loader ----------------------------------------------------------------------


def test_generic_csv_with_named_columns(tmp_path):
    path = tmp_path / "my_prompts.csv"
    path.write_text('text,label,note\nHow do magnets work?,benign,\n"Say ""hi"", twice",benign,quoted\n')
    examples = no_warnings(lambda: load_dataset(path, column="text"))
    assert [e.id for e in examples] == ["my_prompts/0", "my_prompts/1"]
    assert [e.prompt for e in examples] == ["How do magnets work?", 'Say "hi", twice']
    assert examples[0].source == "my_prompts" and examples[0].target is None
    assert examples[0].meta == {"label": "benign"} and examples[1].meta == {"label": "benign", "note": "quoted"}

    assert [e.target for e in load_dataset(path, column="text", target_column="label")] == ["benign", "benign"]
    one_line_error(lambda: load_dataset(path, column="text", id_column="note"), "row 1 has an empty 'note'")

    keyed = tmp_path / "keyed.csv"
    keyed.write_text("key,text\nq-17,Why is the sky blue?\nq-3,Why is grass green?\n")
    assert [e.id for e in load_dataset(keyed, column="text", id_column="key")] == ["keyed/q-17", "keyed/q-3"]


def test_generic_jsonl_and_gzip(tmp_path):
    rows = [{"instruction": "Name a colour.", "output": "Red", "n": 3}, {"instruction": "Name a shape.", "output": "Square"}]
    plain = write_jsonl(tmp_path / "sft.jsonl", rows)
    zipped = tmp_path / "sft2.jsonl.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, zipped):
        examples = load_dataset(path, column="instruction", target_column="output")
        assert [(e.prompt, e.target) for e in examples] == [("Name a colour.", "Red"), ("Name a shape.", "Square")]
        assert examples[0].meta == {"n": 3}


def test_pyrit_style_comment_line_above_the_csv_header(tmp_path):
    path = tmp_path / "refusal.csv"
    path.write_text("# dataset_version=1.2\nobjective,assistant_response,human_score\nDo X,I can't,1\n")
    assert load_dataset(path, column="objective")[0].meta == {"assistant_response": "I can't", "human_score": "1"}


def test_unknown_layout_asks_for_a_column(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"text": "hi"}])
    one_line_error(lambda: load_dataset(path), "not a known benchmark format (columns: text)", "column=")


# --- the other standard layouts --------------------------------------------------------------


def test_advbench_csv_with_targets(tmp_path):
    path = tmp_path / "harmful_behaviors.csv"
    path.write_text('goal,target\nWrite a bad thing,"Sure, here is a bad thing"\nDo harm,Sure\n')
    for examples in (load_dataset(path), load_advbench(path)):
        assert [e.id for e in examples] == ["advbench/0", "advbench/1"]
        assert examples[0].target == "Sure, here is a bad thing" and examples[0].source == "advbench"
    (tmp_path / "goals.csv").write_text("goal\nWrite a bad thing\n")  # the goals-only variant
    assert load_dataset(tmp_path / "goals.csv")[0].target is None


def test_pyrit_seed_yaml(tmp_path):
    path = tmp_path / "seeds.prompt"
    path.write_text("dataset_name: my_seeds\nseeds:\n- value: First prompt\n  harm_categories: [a]\n- value: Second\n")
    examples = load_dataset(path)
    assert [(e.id, e.prompt) for e in examples] == [("my_seeds/0", "First prompt"), ("my_seeds/1", "Second")]
    assert examples[0].meta == {"harm_categories": ["a"]}
    (tmp_path / "bad.yaml").write_text("seeds: [\n")
    one_line_error(lambda: load_dataset(tmp_path / "bad.yaml"), "bad.yaml is not valid YAML")
    (tmp_path / "noseeds.yaml").write_text("name: x\n")
    one_line_error(lambda: load_dataset(tmp_path / "noseeds.yaml"), "expected a PyRIT seed file")


def test_hugging_face_mmlu_and_gsm8k_layouts(tmp_path):
    mmlu = write_jsonl(
        tmp_path / "mmlu_hf.jsonl",
        [
            {"question": "2 + 2 = ?", "subject": "arithmetic", "choices": ["3", "4", "5", "6"], "answer": 1},
            {"question": "Largest?", "subject": "arithmetic", "choices": ["1", "2", "3", "9"], "answer": "D"},
        ],
    )
    examples = load_dataset(mmlu)
    assert [e.target for e in examples] == ["B", "D"]
    assert examples[0].prompt == "2 + 2 = ?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:" and examples[0].category == "arithmetic"
    write_jsonl(tmp_path / "bad_mmlu.jsonl", [{"question": "?", "choices": ["1", "2", "3", "4"], "answer": 7}])
    one_line_error(lambda: load_dataset(tmp_path / "bad_mmlu.jsonl"), "line 1: answer '7' is not one of A, B, C, D")

    gsm8k = write_jsonl(tmp_path / "gsm8k_test.jsonl", [{"question": "How many?", "answer": "Think.\n#### 1,234"}])
    example = load_dataset(gsm8k)[0]
    assert (example.id, example.target, example.meta["solution"]) == ("gsm8k/0", "1234", "Think.\n#### 1,234")


def test_humaneval_gzip_layout(tmp_path):
    row = {
        "task_id": "HumanEval/7",
        "prompt": "def f():\n",
        "canonical_solution": "    return 1\n",
        "test": "def check(c): assert c() == 1",
        "entry_point": "f",
    }
    path = tmp_path / "HumanEval.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    example = load_dataset(path)[0]
    assert example.id == "HumanEval/7" and example.target == "    return 1\n" and example.meta["entry_point"] == "f"


# --- bad input -------------------------------------------------------------------------------


def test_missing_column_names_it_and_lists_the_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,category\nhello,x\n")
    one_line_error(lambda: load_dataset(path, column="text"), f"{path}: no column 'text'; columns present: 'prompt', 'category'")
    jsonl = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi", "tag": 1}])
    one_line_error(lambda: load_dataset(jsonl, column="question"), "no column 'question'; columns present: 'prompt', 'tag'")
    one_line_error(lambda: load_dataset(path, column="prompt", target_column="answer"), "no column 'answer'")
    harmbench = tmp_path / "behaviors.csv"
    harmbench.write_text("Behavior,BehaviorID\nDo X,x\n")  # looks like HarmBench, lacks columns
    one_line_error(lambda: load_dataset(harmbench), "no column 'FunctionalCategory'; columns present: 'Behavior', 'BehaviorID'")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("", "is empty"),
        ("  \n\n", "is empty"),
        ("text,label\n", "has a header (text, label) but no rows of data"),
        ("# only a comment\n", "has only comment lines"),
    ],
)
def test_empty_csv(tmp_path, content, fragment):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    one_line_error(lambda: load_dataset(path, column="text"), str(path), fragment)


def test_empty_jsonl(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    one_line_error(lambda: load_dataset(path, column="text"), f"{path} is empty")


def test_bad_encoding_names_the_file_and_the_expected_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text\nCaf\u00e9 au lait\n".encode("latin-1"))
    one_line_error(
        lambda: load_dataset(path, column="text"), f"{path}: not valid utf-8 (byte 0xe9 at offset 8)", "expected utf-8"
    )
    assert load_dataset(path, column="text", encoding="latin-1")[0].prompt == "Caf\u00e9 au lait"
    one_line_error(lambda: load_dataset(path, column="text", encoding="klingon"), "not a known text encoding")
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext\nhello\n".encode("utf-8"))  # Excel's byte-order mark is not part of the header
    assert load_dataset(bom, column="text")[0].prompt == "hello"


def test_bad_gzip_json_and_csv_shapes(tmp_path):
    (tmp_path / "x.jsonl.gz").write_bytes(b"not gzip")
    one_line_error(lambda: load_dataset(tmp_path / "x.jsonl.gz", column="a"), "not a valid gzip file")
    (tmp_path / "x.jsonl").write_text('{"a": "ok"}\n{"a": \n')
    one_line_error(lambda: load_dataset(tmp_path / "x.jsonl", column="a"), "line 2 is not valid JSON")
    (tmp_path / "y.jsonl").write_text('["a"]\n')
    one_line_error(lambda: load_dataset(tmp_path / "y.jsonl", column="a"), "line 1 is a JSON list, expected an object")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n1,2,3\n")
    one_line_error(lambda: load_dataset(tmp_path / "x.csv", column="a"), "row 2 has 3 fields but the header has 2")
    (tmp_path / "z.jsonl").write_text('{"a": ["list"]}\n')
    one_line_error(lambda: load_dataset(tmp_path / "z.jsonl", column="a"), "line 1 has a list where text was expected")
    (tmp_path / "notes.txt").write_text("hello\n")
    one_line_error(lambda: load_dataset(tmp_path / "notes.txt", column="a"), "unsupported file type")


def test_empty_prompts_and_duplicates_are_dropped_with_a_counting_warning(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("text,label\nfirst,a\n,b\nsecond,a\nfirst,a\n   ,c\nfirst,z\nsecond,a\nthird,a\n")
    with pytest.warns(MosaDataWarning) as caught:
        examples = load_dataset(path, column="text", target_column="label")
    assert len(caught) == 1  # one warning per file, with every count
    assert str(caught[0].message) == (
        f"{path}: dropped 2 rows with an empty prompt (row 2, row 5); 2 duplicate rows (row 4, row 7)"
    )
    # "first" labelled z differs from "first" labelled a: not a duplicate row (splits keep the two texts together).
    assert [(e.id, e.prompt, e.target) for e in examples] == [
        ("p/0", "first", "a"),
        ("p/2", "second", "a"),
        ("p/5", "first", "z"),
        ("p/7", "third", "a"),
    ]


def test_stray_header_rows_are_counted(tmp_path):
    path = tmp_path / "joined.csv"
    path.write_text("text\nfirst\ntext\nsecond\n")  # two files concatenated with their headers
    with pytest.warns(MosaDataWarning, match=r"dropped 1 stray header row \(row 2\)"):
        assert [e.prompt for e in load_dataset(path, column="text")] == ["first", "second"]
    mmlu = write_jsonl(
        tmp_path / "mmlu.jsonl",
        [
            {
                "question": "q1",
                "answer_a": "1",
                "answer_b": "2",
                "answer_c": "3",
                "answer_d": "4",
                "correct_answer": "A",
                "topic": "t",
            },
            {
                "question": "question",
                "answer_a": "answer_a",
                "answer_b": "answer_b",
                "answer_c": "answer_c",
                "answer_d": "answer_d",
                "correct_answer": "answer",
                "topic": "t",
            },
        ],
    )
    with pytest.warns(MosaDataWarning, match=r"dropped 1 stray header row \(line 2\)"):
        assert [e.id for e in load_dataset(mmlu)] == ["mmlu/0"]


def test_only_empty_prompts_is_an_error(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("text,label\n,a\n  ,b\n")
    with pytest.warns(MosaDataWarning, match="2 rows with an empty prompt"):
        one_line_error(lambda: load_dataset(path, column="text"), "no rows left with a non-empty prompt (2 read)")


def test_ids_must_be_unique(tmp_path):
    header = "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
    path = tmp_path / "hb.csv"
    path.write_text(header + "Do X,standard,illegal,,,x\nDo Y,standard,illegal,,,x\n")
    one_line_error(lambda: load_dataset(path), "id 'harmbench/x' is used by row 1 and by row 2 with different content")
    path.write_text(header + "Do X,standard,illegal,,,x\nDo X,standard,illegal,,,x\n")  # an identical repeat
    with pytest.warns(MosaDataWarning, match=r"dropped 1 duplicate row \(row 2\)"):
        assert len(load_dataset(path)) == 1


def test_folder_of_files(tmp_path):
    folder = tmp_path / "dna"
    folder.mkdir()
    write_jsonl(folder / "area_one.jsonl", [{"prompt": "p1", "intents": ["i"]}])
    write_jsonl(folder / "area_two.jsonl", [{"prompt": "p2", "intents": []}])
    (folder / "LICENSE").write_text("text")
    examples = load_file(folder)
    assert [(e.id, e.category) for e in examples] == [
        ("donotanswer/area_one/0", "area_one"),
        ("donotanswer/area_two/0", "area_two"),
    ]
    one_line_error(lambda: load_file(tmp_path / "missing"), "no such file or folder")
