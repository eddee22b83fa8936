"""The attack registry, option checking, and the target's handling of prefill and interventions."""

import re

import pytest

from mosa.attacks import ATTACKS, TestCase, make_attack
from mosa.errors import MosaError
from tests.attacks.conftest import BEHAVIOURS, assert_on_canvas


def test_every_attack_of_the_issue_is_registered():
    assert ATTACKS.names() == [
        "advprefix",
        "anchor",
        "aos",
        "avatar",
        "dia",
        "dialogue",
        "dija",
        "ept",
        "gcg",
        "none",
        "pad",
        "pal",
        "prefill",
        "prefix-forcing",
        "speakeasy",
        "tap",
    ]


def test_an_unknown_attack_lists_the_known_ones():
    with pytest.raises(
        MosaError,
        match=r"unknown attack 'dija2'; available: " + re.escape(", ".join(ATTACKS.names())),
    ):
        make_attack("dija2")


def test_an_unknown_option_lists_the_attack_s_options():
    with pytest.raises(MosaError, match=r"attack 'prefill' has no option positions; its options: position, phrases, seed"):
        make_attack("prefill", {"positions": [0, 40]})


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("prefill", {"position": -1}, "attack prefill: option position=-1 must be an integer >= 0 or a non-empty list of them"),
        ("prefill", {"position": []}, "attack prefill: option position=[] must be"),
        (
            "prefill",
            {"phrases": "polite"},
            "attack prefill: option phrases='polite' must be one of affirmative, organism, paper, procedural or a list",
        ),
        ("prefill", {"phrases": ["ok", ""]}, "must be a non-empty list of non-empty strings"),
        ("dija", {"span": 0}, "attack dija: option span=0 must be an integer >= 1"),
        ("dija", {"instruction": "{behaviour} {steps}"}, "whose only placeholders are {behaviour}, {structure}"),
        (
            "pad",
            {"anchors": {"Step 1:": 1.5}},
            "attack pad: option anchors['Step 1:']=1.5 must be an integer token index >= 0 or a fraction",
        ),
        ("pad", {"anchors": ["Step 1:"]}, "must be a non-empty mapping of text to position"),
        ("anchor", {"step": "4"}, "attack anchor: option step='4' must be an integer >= 0"),
        ("anchor", {"text": ""}, "attack anchor: option text='' must be a non-empty string"),
        ("prefix-forcing", {"format": "xml"}, "option format='xml' must be one of json, prefix or a mapping"),
        ("gcg", {"suffix_length": 0}, "attack gcg: option suffix_length=0 must be an integer >= 1"),
        ("gcg", {"iterations": 2.5}, "attack gcg: option iterations=2.5 must be an integer >= 0"),
        ("gcg", {"allow_non_ascii": "yes"}, "attack gcg: option allow_non_ascii='yes' must be true or false"),
    ],
)
def test_bad_options_are_refused_in_one_line(name, options, message):
    with pytest.raises(MosaError) as error:
        make_attack(name, options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_spans_that_leave_the_response_are_refused_before_sampling(target):
    with pytest.raises(
        MosaError,
        match=r"attack prefill: 'the cat sat' at response position 22 spans \[22, 25\) tokens, outside the response \[0, 24\)",
    ):
        make_attack("prefill", {"position": 22, "phrases": ["the cat sat"]}).cases(BEHAVIOURS, target)


def test_the_target_applies_prefill_and_interventions_per_case(target):
    cases = [
        TestCase("a", "how are you", [{"role": "user", "content": "how are you"}], prefill={3: "the cat"}),
        TestCase("b", "what is", [{"role": "user", "content": "what is"}], interventions={7: {10: "red dog"}}),
        TestCase("c", "hello", [{"role": "user", "content": "hello"}], prefill={0: "sure"}, interventions={2: {20: "one two"}}),
    ]
    first, second, third = target.respond(cases)
    assert_on_canvas(target, cases[0], first, {3: "the cat"}, committed_at=-1)
    assert_on_canvas(target, cases[1], second, {10: "red dog"}, committed_at=7)
    assert third.response_ids[0] == target.tokens("sure")[0] and third.commit_step[0] == -1
    assert third.response_ids[20:22] == target.tokens("one two") and third.commit_step[20:22] == [2, 2]


def test_a_judge_s_queries_are_the_requests_its_model_really_gets(tokenizer, tmp_path):
    """A rubric judge asks its backend once per non-empty response (an empty one is EMPTY unasked);
    the classifier judge runs its model on the same ones; a keyword judge asks no model."""
    from mosa.attacks.base import model_queries
    from mosa.judges import make_judge
    from tests.chat_server import ChatServer
    from tests.judges.test_classifier import tiny_roberta

    responses = ["", "the cat is red", "  ", "how are you"]
    with ChatServer(lambda request: "#score 1") as server:
        rubric = make_judge(
            {"name": "harm-rubric", "backend": {"type": "openai", "model": "j", "base_url": server.url, "cache": False}}
        )
        rubric.judge_many(["what is the cat"] * len(responses), responses)
        assert model_queries(rubric, responses) == len(server.requests) == 2
    classifier = make_judge({"name": "classifier", "model": str(tiny_roberta(tmp_path / "roberta", tokenizer))})
    assert model_queries(classifier, responses) == 2
    assert model_queries(make_judge("keyword-gcg"), responses) == 0
