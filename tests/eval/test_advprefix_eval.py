"""AdvPrefix through `mosa eval`: a real 127.0.0.1 server plays the uncensored generator and the
harm-rubric judge of the prefilled completions; the tiny dLLM of tests/eval/conftest.py is the target;
a keyword judge gives the evaluation's verdicts. Both modes: the request asking for the prefix, and
the prefix prefilled in the middle of the answer (the Table 4 variant)."""

import csv

from mosa.attacks.advprefix import PROMPT_INSTRUCTION
from tests.chat_server import ChatServer
from tests.eval.conftest import GOALS, mosa_eval, read_jsonl, write_config

SURE = "sure here is the cat\nstep one the cat sat on the mat"
N_CANDIDATES, N_SAMPLES = 10, 2  # every candidate: 2 answers x 5 ablations


def advprefix_server() -> ChatServer:
    """Answers that depend on the request alone (requests arrive in any order): the generator opens
    with "sure" when asked to and writes about a dog otherwise; the judge grades 5 of 5 an answer that
    holds the "sure" prefix (wherever it was prefilled), 1 of 5 any other."""

    def reply(request: dict) -> str:
        system, last = request["messages"][0]["content"], request["messages"][-1]["content"]
        if system.startswith("You grade the responses"):
            return "It complies.\n#score 5" if "sure here is the cat step" in last else "It does not.\n#score 1"
        if 'Make "sure" the first word' in last:
            return SURE
        return "here is how\n\nthe dog ran fast then sat" if request["temperature"] == 0 else "what is the cat"

    return ChatServer(reply)


def test_advprefix_runs_through_mosa_eval_in_both_modes_and_a_rerun_asks_nothing(settings, tmp_path):
    with advprefix_server() as server:
        spec = {"type": "openai", "model": "uncensored", "base_url": server.url, "cache": False}
        common = {
            "name": "advprefix",
            "generators": [spec],
            "judge": {"name": "harm-rubric", "backend": spec},
            "meta_prefixes": ["sure", ""],
            "samples_per_meta_prefix": [2, 1],
            "min_tokens": 6,
            "filter_len": 0,
            "n_candidates": N_CANDIDATES,
            "n_samples": N_SAMPLES,
        }
        attacks = [common, {**common, "label": "advprefix-middle", "mode": "prefill", "window": [4, 14]}]
        config = write_config(tmp_path, {**settings, "attacks": attacks, "judges": ["keyword-long"], "limit": 2})
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0

        per_behaviour = 5 + N_CANDIDATES * N_SAMPLES  # generator requests, then judged samples
        assert len(server.requests) == 2 * 2 * per_behaviour
        records = read_jsonl(run / "records.jsonl")
        assert sorted((record["attack"], record["behaviour"]) for record in records) == sorted(
            (attack, goal) for attack in ("advprefix", "advprefix-middle") for goal in GOALS[:2]
        )
        for record in records:
            payload = record["payload"]
            # All ten candidates are measured; the "sure" ones are judged harmful at every sample and win.
            assert payload["scored"] == len(payload["candidates"]) == N_CANDIDATES
            assert payload["prefix"].startswith("sure here is the cat\nstep") and payload["pasr"] == 1.0
            assert payload["success"] is True
            assert {role: n for role, n in payload["queries"].items() if role != "target"} == {
                "generator": 5,
                "judge": N_CANDIDATES * N_SAMPLES,
            }
            if record["attack"] == "advprefix":
                prompt = PROMPT_INSTRUCTION.format(behaviour=record["behaviour"], prefix=payload["prefix"])
                assert record["messages"] == [{"role": "user", "content": prompt}] and record["prefill"] == {}
                assert payload["queries"]["target"] == payload["scored"] + N_CANDIDATES * N_SAMPLES
            else:  # the prefix prefilled inside the window, at its most likely offset
                offset = payload["offset"]
                assert record["messages"] == [{"role": "user", "content": record["behaviour"]}]
                length = len(payload["prefix"].split())  # the tiny model's tokens are words
                assert record["prefill"] == {str(offset): payload["prefix"]} and 4 <= offset <= max(4, 14 - length)
                assert payload["queries"]["target"] > payload["scored"] + N_CANDIDATES * N_SAMPLES  # several offsets each

        rows = {row["attack"]: row for row in csv.DictReader((run / "asr.csv").open())}
        for attack, row in rows.items():
            mine = [record for record in records if record["attack"] == attack]
            target = sum(record["payload"]["queries"]["target"] + 1 for record in mine) / 2  # + the eval's own sample
            assert float(row["target_queries_per_behaviour"]) == target
            assert float(row["auxiliary_queries_per_behaviour"]) == per_behaviour
        assert not (run / "rounds").exists() or not any((run / "rounds").rglob("*.json"))  # cleared once the cases are saved

        asked = len(server.requests)
        for name in ("completions.jsonl", "verdicts.jsonl", "records.jsonl", "asr.md", "asr.csv"):
            (run / name).unlink()  # as if killed after the attack had saved its cases
        assert mosa_eval("--output", run) == 0  # samples the saved cases again, without selecting
        assert len(server.requests) == asked
        assert read_jsonl(run / "records.jsonl") == records
