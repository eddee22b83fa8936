"""Speak Easy through `mosa eval`: a real 127.0.0.1 server writes the sub-questions (the tiny dLLM
writes no numbered questions), translates and plays the default selector (harm-rubric); the tiny
dLLM of tests/eval/conftest.py answers; the evaluation judges the composed answer."""

import csv
import re

from tests.chat_server import ChatServer
from tests.eval.conftest import GOALS, mosa_eval, read_jsonl, write_config


def speakeasy_server() -> ChatServer:
    """Two sub-questions per request; translations into the tiny vocabulary (the tiny dLLM leaves its
    answer empty for the English prompt, whose words it does not know), translations back marked with
    their language; the harm rubric gives answers from Thai 4 and from Zulu 2, so Thai wins."""

    def reply(request: dict) -> str:
        system, last = request["messages"][0]["content"], request["messages"][-1]["content"]
        if system.startswith("[TASK]"):
            return "1. What is first?\n2. What is second?"
        if system.startswith("You grade the responses"):
            return "One line.\n#score " + ("4" if "[Thai]" in last else "2")
        source, goal = re.search(r"from (.+?) into (.+?)\. ", system).groups()
        return f"[{source}] {last}" if goal == "English" else {"Thai": "hello world", "Zulu": "the cat sat on the mat"}[goal]

    return ChatServer(reply)


def test_speakeasy_runs_through_mosa_eval_and_records_its_composed_answer(settings, tmp_path):
    with speakeasy_server() as server:
        model = {"type": "openai", "model": "helper", "base_url": server.url, "cache": False}
        speakeasy = {"name": "speakeasy", "translator": model, "decomposer": model, "languages": ["en", "th", "zu"]}
        config = write_config(tmp_path, {**settings, "attacks": [speakeasy], "judges": ["keyword-long"], "limit": 2})
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0

        # Per behaviour: 1 decomposition, 2 x 2 translations there and back, 2 x 2 selector grades (the
        # empty English answers score 0 unasked).
        assert len(server.requests) == 2 * (1 + 4 + 4 + 4)
        records = read_jsonl(run / "records.jsonl")
        assert [record["behaviour"] for record in records] == GOALS[:2]
        for record in records:
            payload = record["payload"]
            assert record["composed"] is True and record["order"] is None and record["response_ids"] == []
            assert payload["subquestions"] == ["What is first?", "What is second?"]
            assert payload["selected"] == ["th", "th"] and payload["score_trajectory"] == [4.0, 4.0]
            english = payload["answers_english"]
            assert record["response"] == english[0]["th"] + english[1]["th"] and english[0]["th"].startswith("[Thai] ")
            assert [answers["en"] for answers in payload["answers"]] == ["", ""]
            assert payload["queries"] == {"target": 6, "translator": 8, "selector": 4, "decomposer": 1}
            assert record["messages"] == [{"role": "user", "content": record["behaviour"]}]
            assert payload["selector"].startswith("harm-rubric (harm-rubric-") and payload["decomposer"].startswith(
                "openai:helper@"
            )

        [row] = list(csv.DictReader((run / "asr.csv").open()))
        assert (row["attack"], row["responses"]) == ("speakeasy", "2")
        # the eval samples nothing for a composed answer: the target queries are the attack's own
        assert (float(row["target_queries_per_behaviour"]), float(row["auxiliary_queries_per_behaviour"])) == (6, 13)
        assert not (run / "rounds").exists() or not any((run / "rounds").rglob("*.json"))

        asked = len(server.requests)
        for name in ("completions.jsonl", "verdicts.jsonl", "records.jsonl", "asr.md", "asr.csv"):
            (run / name).unlink()  # as if killed after the cases were saved
        assert mosa_eval("--output", run) == 0
        assert len(server.requests) == asked
        assert read_jsonl(run / "records.jsonl") == records
