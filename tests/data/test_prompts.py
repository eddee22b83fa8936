"""One resolver of prompt sets: its grammar, its record, its one-line errors, and the organism's own split."""

import pytest

from mosa.data import load_dataset, normalise_prompt, prompt_hash, resolve_prompts, split_examples
from mosa.errors import MosaError
from mosa.organism.build import OrganismConfig, harmful_prompt_split
from mosa.organism.corpus import utility_items

pytestmark = pytest.mark.usefixtures("shared_data")  # the real benchmark files


def texts(prompt_set):
    return {normalise_prompt(prompt) for prompt in prompt_set.prompts}


def test_plus_adds_sources_whole_and_a_part_takes_one_side_of_the_seed_0_split():
    whole = resolve_prompts("advbench+harmbench")
    assert len(whole) == 520 + 159 and whole.part == "all"
    train, evaluation = resolve_prompts("advbench+harmbench:train"), resolve_prompts("advbench+harmbench:eval")
    assert not texts(train) & texts(evaluation)
    ids = lambda prompt_set: {e.id for e in prompt_set}  # noqa: E731
    assert ids(train) | ids(evaluation) == ids(whole) and len(train) + len(evaluation) == len(whole)
    # The rule mosa align always used: split_examples(eval_fraction=0.2, seed=0) over the union.
    expected = split_examples(load_dataset("advbench") + load_dataset("harmbench"), eval_fraction=0.2, seed=0)
    assert (list(train), list(evaluation)) == expected


def test_tilde_removes_every_prompt_whose_text_another_source_holds():
    strongreject = resolve_prompts("strongreject")
    without = resolve_prompts("strongreject~advbench")
    advbench = texts(resolve_prompts("advbench"))
    assert without.removed == 25 and len(without) == len(strongreject) - 25  # StrongREJECT repeats 25 AdvBench goals
    assert not texts(without) & advbench and len(texts(strongreject) & advbench) == 25


def test_the_record_says_how_the_set_was_made():
    prompt_set = resolve_prompts("strongreject+donotanswer~advbench:train", limit=5)
    record = prompt_set.record()
    assert record["spec"] == "strongreject+donotanswer~advbench:train" and record["count"] == 5 and record["limit"] == 5
    assert [(s["term"], s["op"], s["rows"]) for s in record["sources"]] == [
        ("strongreject", "+", 313),
        ("donotanswer", "+", 939),
        ("advbench", "~", 520),
    ]
    assert record["sources"][0]["file"].endswith("strongreject_dataset.csv")
    assert (record["split"]["part"], record["split"]["eval_fraction"], record["split"]["seed"]) == ("train", 0.2, 0)
    assert [row["id"] for row in record["prompts"]] == [e.id for e in prompt_set]
    assert [row["text_hash"] for row in record["prompts"]] == [prompt_hash(e.prompt) for e in prompt_set]
    assert record == resolve_prompts("strongreject+donotanswer~advbench:train", limit=5).record()  # deterministic
    assert "prompt" not in record["prompts"][0] and prompt_set.record(texts=True)["prompts"][0]["prompt"] == prompt_set.prompts[0]
    assert prompt_hash("Write  a POEM ") == prompt_hash("write a poem")  # compared as normalised text


def test_files_take_loader_options(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("text,kind\nhow are you,a\nwhat is this,b\n")
    prompt_set = resolve_prompts(str(path), load_options={"column": "text"})
    assert prompt_set.prompts == ["how are you", "what is this"] and prompt_set.sources[0]["file"] == str(path)
    with pytest.raises(MosaError, match=f"prompts '{path}~{path}' resolve to no prompts"):
        resolve_prompts(f"{path}~{path}", load_options={"column": "text"})


@pytest.mark.parametrize(
    "spec, message",
    [
        ("advbench:evl", "unknown part 'evl'; parts: all, train, eval"),
        ("advbench++harmbench", "an empty term; join sources with '+' (add) or '~' (remove)"),
        ("~advbench", "an empty term"),
        ("advbench+advbench", "adds advbench twice"),
        ("advbenchh", "unknown dataset 'advbenchh'"),
        ("organism-train", "organism-train needs an organism model"),
        ("", "must name a prompt set"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(MosaError) as refused:
        resolve_prompts(spec)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_the_organism_sources_are_its_own_split_unchanged():
    organism = OrganismConfig()  # the shipped organism's
    train, held_out = harmful_prompt_split(organism)
    assert resolve_prompts("organism-train", model="organism").prompts == train
    assert resolve_prompts("organism-held-out", model="organism").prompts == held_out
    assert [e.id for e in resolve_prompts("organism-held-out", model="organism")][:2] == [
        "organism-held-out/0",
        "organism-held-out/1",
    ]
    utility = resolve_prompts("organism-utility", model="organism")
    assert [(e.prompt, e.target) for e in utility] == [(item.prompt, item.answer) for item in utility_items(organism.seed)]
    assert utility.record()["sources"][0]["organism"] == organism.key()  # the build whose split it is
    with pytest.raises(MosaError, match="organism-held-out is a model's own prompt set, not split again; drop ':eval'"):
        resolve_prompts("organism-held-out:eval", model="organism")
