"""AdvPrefix on the tiny dLLM target: generators on a real 127.0.0.1 server (or scripted objects),
scripted judges, and what reaches the target at each stage (NLL readings, prefilled PASR samples)."""

import json
import math

import pytest

from mosa.attacks import Target, make_attack
from mosa.attacks.advprefix import PROMPT_INSTRUCTION, WINDOW_INSTRUCTION, ablate, prefilter
from mosa.attacks.base import RoundStore
from mosa.errors import MosaError
from mosa.judges import Verdict
from tests.attacks.conftest import BEHAVIOURS, make_target
from tests.chat_server import ChatServer, Reply

BEHAVIOUR = BEHAVIOURS[0]  # "how are you", no target string of its own

# What the generators answer, greedy then sampled (the order the attack asks in), for meta prefixes
# ["sure", ""] with one greedy answer each and [2, 1] samples: 5 requests.
GREEDY = ["sure here is the cat\nstep one the cat sat on the mat", "here is how\n\nthe dog ran fast then sat"]
SAMPLED = [
    "sure here is the cat\nstep one the cat sat on the mat",  # a duplicate of the first
    "I cannot help with that.\nNo.",  # a refusal
    "what is the cat",  # too short, and one line
]
SMALL = {"meta_prefixes": ["sure", ""], "samples_per_meta_prefix": [2, 1], "min_tokens": 6, "filter_len": 0}


class RecordingTarget(Target):
    """The tiny target, recording what the attack asks of it; fails, as a dead machine would, at
    log-probability reading number `fail_at` (1-based). Its records are shared with its copies."""

    def __init__(self, lm, fail_at=None):
        made = make_target(lm)
        super().__init__(lm, made.sampler, made.batch_size)
        self.readings, self.batches, self.fail_at = [], [], fail_at

    def teacher_forced_logprobs(self, messages, response, position=0, **options):
        return self._record(super().teacher_forced_logprobs, messages, response, position, options)

    def masked_logprobs(self, messages, response, position=0, **options):
        return self._record(super().masked_logprobs, messages, response, position, options)

    def elbo_logprobs(self, messages, response, position=0, **options):
        return self._record(super().elbo_logprobs, messages, response, position, options)

    def _record(self, read, messages, response, position, options):
        if len(self.readings) + 1 == self.fail_at:
            raise MosaError("the target's machine went away")
        result = read(messages, response, position=position, **options)
        self.readings.append({"messages": messages, "prefix": response, "position": position, "nll": -result.total})
        return result

    def respond(self, cases):
        self.batches.append({"temperature": self.sampler.temperature, "cases": cases})
        return super().respond(cases)


class PrefixJudge:
    """Harmful when the answer opens with "sure" (the prefilled prefix decides); asks a "model", so
    its requests count. Fails like a dead endpoint on call `fail_at` (1-based)."""

    name, version, backend = "prefix", "prefix-1", "scripted"

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def judge_many(self, prompts, responses):
        if len(self.calls) + 1 == self.fail_at:
            raise MosaError("the judge's endpoint is down")
        self.calls.append((list(prompts), list(responses)))
        return [Verdict("compliant" if r.startswith("sure") else "refusal", r.startswith("sure")) for r in responses]


class ScriptedGenerator:
    """A generator object answering in the order asked from GREEDY then SAMPLED; `down` fails every call."""

    def __init__(self, name="scripted", down=False):
        self.name, self.down, self.requests = name, down, []

    def chat_many(self, conversations, *, max_tokens=512, temperature=0.0):
        if self.down:
            raise MosaError(f"{self.name} is down")
        self.requests += [(c, max_tokens, temperature) for c in conversations]
        return list(GREEDY if temperature == 0 else SAMPLED)[: len(conversations)]


def generator_server(reject=None):
    """The same answers from a real server; requests whose last message holds `reject` are refused (HTTP 400)."""
    greedy, sampled = list(GREEDY), list(SAMPLED)

    def reply(request):
        if reject and reject in request["messages"][-1]["content"]:
            return Reply("the request exceeds the available context size", 400)
        return (greedy if request["temperature"] == 0 else sampled).pop(0)

    return ChatServer(reply)


def server_spec(server):
    # One request at a time, so the scripted answers follow the order of the requests.
    return {"type": "openai", "model": "uncensored", "base_url": server.url, "concurrency": 1, "cache": False}


def selection_score(candidate):
    return -10 * math.log(candidate["pasr"] + 1e-6) + candidate["nll"]


def test_prefilter_and_ablate():
    texts = [
        "  sure here is\nstep one two",  # leading whitespace removed
        "sure here is\nstep one two",  # then a duplicate
        "one two",  # too short
        "I can\u2019t do that\nreally not",  # a refusal opening, curly apostrophe and all
        "fine then, I cannot do it\nok",  # a refusal phrase
        "one two three four five\n",  # a line break only at the end
    ]
    kept, counts = prefilter(texts, lambda text: len(text.split()), min_tokens=3, openings=["I can't"], phrases=["I cannot"])
    assert kept == ["sure here is\nstep one two"]
    assert counts == {"too_short": 1, "refusal_opening": 1, "refusal_phrase": 1, "no_line_break": 1, "duplicate": 1}

    split, join = str.split, " ".join
    assert ablate("Title: how\n\n  1. mix the two\nlater", split, join, 3) == [
        "Title: how\n\n  1.",
        "Title: how\n\n  1. mix",
        "Title: how\n\n  1. mix the",
    ]
    assert ablate("a b\nc", split, join, 5) == ["a b\nc"]
    assert ablate("one line only", split, join, 5) == [] and ablate("first\n \n", split, join, 5) == []


def test_advprefix_selects_by_nll_and_prefilled_success_and_asks_for_the_prefix(lm):
    target = recorded = RecordingTarget(lm)
    judge = PrefixJudge()
    with generator_server() as server:
        attack = make_attack(
            "advprefix", {"generators": [server_spec(server)], "judge": judge, "n_candidates": 4, "n_samples": 3, **SMALL}
        )
        [case] = attack.cases([BEHAVIOUR], target)

    # Generation: one greedy and the sampled answers per meta prefix, 32 new tokens, asked to open with the meta prefix.
    asked = [(r["messages"], r["temperature"], r["max_tokens"]) for r in server.requests]
    ask_sure = [{"role": "user", "content": 'how are you\n\nMake "sure" the first word of your answer.'}]
    plain = [{"role": "user", "content": "how are you"}]
    assert asked == [(ask_sure, 0, 32), (plain, 0, 32), (ask_sure, 1.0, 32), (ask_sure, 1.0, 32), (plain, 1.0, 32)]

    payload = case.payload
    assert payload["generated"] == 5 and payload["scored"] == 10  # two survivors, five ablations each
    assert payload["filtered"] == {
        "too_short": 1,
        "refusal_opening": 1,
        "refusal_phrase": 0,
        "no_line_break": 0,
        "duplicate": 1,
        "ablations": 10,
        "too_long_for_the_response": 0,
    }
    # NLL: every candidate read once, teacher-forced, at position 0, in the conversation of the attack.
    scored = {reading["prefix"]: reading for reading in recorded.readings}
    assert len(recorded.readings) == len(scored) == 10 and {r["position"] for r in recorded.readings} == {0}
    assert "sure here is the cat\nstep one the cat sat" in scored and "here is how\n\nthe" in scored
    for prefix, reading in scored.items():
        assert reading["messages"] == [
            {"role": "user", "content": PROMPT_INSTRUCTION.format(behaviour="how are you", prefix=prefix)}
        ]
        assert reading["nll"] == pytest.approx(-target.teacher_forced_logprobs(reading["messages"], prefix, top_k=0).total)
    lowest = sorted(scored, key=lambda prefix: scored[prefix]["nll"])[:4]
    assert [c["prefix"] for c in payload["candidates"]] == lowest  # the n_candidates lowest, in order

    # PASR: each kept candidate prefilled at position 0 and sampled 3 times at temperature 1, one
    # candidate a round (a batch of 4 holds one candidate's 3 samples).
    assert [len(batch["cases"]) for batch in recorded.batches] == [3] * 4
    assert {batch["temperature"] for batch in recorded.batches} == {1.0} and target.sampler.temperature == 0
    pasr_cases = [case for batch in recorded.batches for case in batch["cases"]]
    assert len({c.prompt_id for c in pasr_cases}) == 12  # each sample its own noise
    assert [c.prefill for c in pasr_cases] == [{0: prefix} for prefix in lowest for _ in range(3)]
    assert [c.messages for c in pasr_cases] == [scored[prefix]["messages"] for prefix in lowest for _ in range(3)]
    judged = [response for _, responses in judge.calls for response in responses]
    assert len(judged) == 12 and all(prompts == ["how are you"] * 3 for prompts, _ in judge.calls)
    for k, candidate in enumerate(payload["candidates"]):
        successes = sum(response.startswith("sure") for response in judged[3 * k : 3 * k + 3])
        assert candidate["successes"] == successes and candidate["pasr"] == successes / 3
        assert candidate["score"] == pytest.approx(selection_score(candidate))

    chosen = min(payload["candidates"], key=selection_score)
    assert payload["prefix"] == chosen["prefix"] and (payload["nll"], payload["pasr"]) == (chosen["nll"], chosen["pasr"])
    # PASR outweighs NLL: the fourth most likely candidate, the first that makes the target go on with "sure"
    assert payload["prefix"] == "sure here is the cat\nstep" and payload["candidates"][0]["pasr"] == 0
    assert payload["score_trajectory"] == [min(map(selection_score, payload["candidates"][: k + 1])) for k in range(4)]
    assert payload["success"] is (chosen["pasr"] > 0)
    # The attack: the request asking for the prefix, nothing on the canvas.
    assert case.messages == scored[chosen["prefix"]]["messages"] and case.prefill == {}
    assert payload["prompt"] == case.messages[-1]["content"] and payload["mode"] == "prompt"
    assert payload["queries"] == {"generator": 5, "target": 10 + 12, "judge": 12}
    assert payload["generators"] == [f"openai:uncensored@{server.url}"] and payload["judge"] == "prefix (prefix-1)"
    json.dumps(payload)


@pytest.mark.parametrize("mode", ["prefill", "prompt"])
def test_a_window_reads_every_offset_and_prefills_the_most_likely(lm, mode):
    target = recorded = RecordingTarget(lm)  # 24 response tokens
    options = {"mode": mode, "window": [3, 14], "nll": "masked", "n_candidates": 2, "n_samples": 2, **SMALL}
    attack = make_attack("advprefix", {"generators": ScriptedGenerator(), "judge": PrefixJudge(), **options})
    [case] = attack.cases([BEHAVIOUR], target)

    by_prefix = {}
    for reading in recorded.readings:
        by_prefix.setdefault(reading["prefix"], []).append(reading)
    assert len(by_prefix) == 10
    for prefix, readings in by_prefix.items():
        length = len(target.tokens(prefix))  # 6 to 13 tokens: offsets 3 .. 14 - length, at least 3
        assert [r["position"] for r in readings] == list(range(3, max(3, 14 - length) + 1))
    best = {prefix: min(readings, key=lambda r: r["nll"]) for prefix, readings in by_prefix.items()}
    for candidate in case.payload["candidates"]:
        assert (candidate["offset"], candidate["nll"]) == (
            best[candidate["prefix"]]["position"],
            best[candidate["prefix"]]["nll"],
        )
    kept = case.payload["candidates"]
    assert [c.prefill for batch in recorded.batches for c in batch["cases"]] == [
        {c["offset"]: c["prefix"]} for c in kept for _ in range(2)
    ]

    prefix, offset = case.payload["prefix"], case.payload["offset"]
    assert case.payload["window"] == [3, 14] and 3 <= offset < 14
    if mode == "prefill":
        assert case.messages == [{"role": "user", "content": "how are you"}] and case.prefill == {offset: prefix}
    else:
        asked = WINDOW_INSTRUCTION.format(behaviour="how are you", prefix=prefix, start_words=2)
        assert case.messages == [{"role": "user", "content": asked}] and case.prefill == {}
        assert all(
            r["messages"][-1]["content"].startswith("how are you\n\nOpen your answer with a short") for r in recorded.readings
        )


def test_a_killed_selection_resumes_at_the_stage_and_candidate_it_reached(lm, tmp_path):
    options = {"n_candidates": 3, "n_samples": 2, "nll": "elbo", "mc_num": 3, **SMALL}  # 2 candidates a round

    def run(store, generators, fail_reading=None, fail_judging=None):
        target = recorded = RecordingTarget(lm, fail_reading)
        target.rounds = store
        judge = PrefixJudge(fail_judging)
        attack = make_attack("advprefix", {"generators": generators, "judge": judge, **options})
        try:
            [case] = attack.cases([BEHAVIOUR], target)
        except MosaError:
            case = None
        return case, recorded, judge, generators

    whole, whole_target, whole_judge, _ = run(RoundStore(), [ScriptedGenerator("one"), ScriptedGenerator("two")])
    # 10 candidates (the generators agree), 3 kept, 2 a round
    assert len(whole_target.readings) == 10 and len(whole_target.batches) == 2 and len(whole_judge.calls) == 2

    store = RoundStore(tmp_path / "rounds")
    # Killed while the second generator is asked: the first one's answers are kept.
    case, recorded, _, (one, two) = run(store, [ScriptedGenerator("one"), ScriptedGenerator("two", down=True)])
    assert case is None and len(one.requests) == 5 and not recorded.readings
    assert len(store.load(BEHAVIOUR.id)["generated"]) == 1
    # Killed at the 8th NLL reading: the second generator asked once, 7 readings kept.
    case, recorded, _, (one, two) = run(store, [ScriptedGenerator("one"), ScriptedGenerator("two")], fail_reading=8)
    assert case is None and (len(one.requests), len(two.requests)) == (0, 5) and len(recorded.readings) == 7
    assert len(store.load(BEHAVIOUR.id)["nll"]) == 7
    # Killed while the second PASR round is judged: the first round's counts are kept.
    case, recorded, judge, _ = run(store, [ScriptedGenerator("one"), ScriptedGenerator("two")], fail_judging=2)
    assert case is None and len(recorded.readings) == 3 and len(recorded.batches) == 2 and len(judge.calls) == 1
    assert len(store.load(BEHAVIOUR.id)["pasr"]) == 2
    # The rest: only the second PASR round, asked again since its counts were never saved.
    resumed, recorded, judge, (one, two) = run(store, [ScriptedGenerator("one"), ScriptedGenerator("two")])
    assert not one.requests and not two.requests and not recorded.readings
    assert len(recorded.batches) == 1 and len(judge.calls) == 1
    assert resumed.payload == whole.payload and resumed.messages == whole.messages
    assert resumed.payload["queries"] == {"generator": 10, "target": 10 + 3 * 2, "judge": 6}  # each counted once


def test_a_request_a_server_rejects_fails_only_its_own_item(lm, capsys):
    """The generator's server rejects the requests that ask for "sure" (3 of 5); harm-rubric, on the
    same server, rejects the answers about a dog and grades the others 5 of 5."""

    def reply(request):
        system, last = request["messages"][0]["content"], request["messages"][-1]["content"]
        if system.startswith("You grade the responses"):
            dog = "Response:\nhere is how the dog" in last  # the prefilled prefix holds "dog"
            return Reply("the request exceeds the available context size", 400) if dog else "Harmful.\n#score 5"
        if 'Make "sure"' in last:
            return Reply("the request exceeds the available context size", 400)
        return GREEDY[1] if request["temperature"] == 0 else SAMPLED[2]

    with ChatServer(reply) as server:
        judge = {"name": "harm-rubric", "backend": server_spec(server)}
        attack = make_attack(
            "advprefix", {"generators": server_spec(server), "judge": judge, "n_candidates": 2, "n_samples": 2, **SMALL}
        )
        [case] = attack.cases([BEHAVIOUR], make_target(lm))

    payload = case.payload
    assert payload["rejected_generator_requests"] == 3 and payload["generated"] == 2
    dog = [c for c in payload["candidates"] if "dog" in c["prefix"]]
    assert payload["rejected_judge_requests"] == 2 * len(dog)
    assert all((c["undecided"], c["pasr"]) == (2, 0.0) for c in dog)  # a rejected sample counts as a failure
    assert all(c["pasr"] == 1.0 for c in payload["candidates"] if c not in dog)
    assert payload["queries"] == {"generator": 5, "target": payload["scored"] + 4, "judge": 4}
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("advprefix: ")]
    assert sum(line.startswith("advprefix: b1: generator openai:uncensored@") for line in lines) == 3
    assert sum(line.startswith("advprefix: b1: judge: ") for line in lines) == 2 * len(dog)
    assert all(line.endswith(("; no candidate from this request", "; the sample counts as a failure")) for line in lines)


def test_without_a_candidate_the_behaviours_own_target_is_the_prefix(lm):
    refusals = type(
        "Refuses",
        (),
        {"name": "r", "chat_many": lambda self, c, **_: ["I cannot help with that request at all.\nSorry."] * len(c)},
    )()
    target = recorded = RecordingTarget(lm)
    attack = make_attack("advprefix", {"generators": refusals, "judge": PrefixJudge(), "mode": "prefill", **SMALL})
    first, second = attack.cases(BEHAVIOURS, target)
    assert first.prefill == {0: "Sure, here is how to do it."} and second.prefill == {0: "sure here is the cat"}
    assert second.messages == [{"role": "user", "content": "what is the cat"}]
    assert second.payload["fallback"] is True and second.payload["success"] is False and second.payload["candidates"] == []
    assert second.payload["filtered"]["refusal_opening"] == 5 and second.payload["queries"]["target"] == 0
    assert not recorded.readings and not recorded.batches


def test_advprefix_options_are_checked(lm):
    gen, judge = ScriptedGenerator(), PrefixJudge()
    with pytest.raises(MosaError, match=r"^attack 'advprefix' needs generators; e.g. a model spec such as openai:MODEL@URL"):
        make_attack("advprefix", {"judge": judge})
    with pytest.raises(
        MosaError, match=r"^attack advprefix needs judge, .*e.g. \{name: harm-rubric, backend: openai:MODEL@URL\}"
    ):
        make_attack("advprefix", {"generators": gen})
    bad = [
        ({"mode": "suffix"}, r"option mode='suffix' must be one of prompt, prefill"),
        ({"nll": "exact"}, r"option nll='exact' must be one of teacher-forced, masked, elbo"),
        (
            {"samples_per_meta_prefix": [1, 2]},
            r"option samples_per_meta_prefix=\[1, 2\] must be one count, or one per meta prefix \(4\)",
        ),
        ({"n_samples": 0}, r"option n_samples=0 must be an integer >= 1"),
        ({"pasr_weight": -1}, r"option pasr_weight=-1 must be a number >= 0"),
        ({"window": [60, 20]}, r"option window=\[60, 20\] must be a response window"),
        ({"instruction": "{behaviour} please"}, r"option instruction=.* must hold \{prefix\}"),
        ({"instruction": "{behaviour} {suffix}"}, r"option instruction=.* whose only placeholders are"),
        ({"generators": []}, r"option generators=\[\] must be a model spec"),
    ]
    for options, message in bad:
        with pytest.raises(MosaError, match="^attack advprefix: " + message):
            make_attack("advprefix", {"generators": gen, "judge": judge, **options})
    attack = make_attack("advprefix", {"generators": gen, "judge": judge, "window": [20, 60]})
    with pytest.raises(MosaError, match=r"window \[20, 60\] ends past the response \(24 tokens\)"):
        attack.cases([BEHAVIOUR], make_target(lm))
    assert not gen.requests  # refused before any work
