"""AVATAR through `mosa eval`: a real 127.0.0.1 server plays the attacker, the metaphor selector and the
harm-rubric scorer; the tiny dLLM of tests/eval/conftest.py is the target; a keyword judge gives the verdicts."""

import csv
import json
import re
import threading

from tests.chat_server import ChatServer
from tests.eval.conftest import GOALS, mosa_eval, read_jsonl, write_config


def avatar_server() -> ChatServer:
    """One metaphor per request; the scorer grades a behaviour's accumulated answers 2 of 5 at the first
    turn and 5 after, so each conversation succeeds at its second turn."""
    graded: dict[str, int] = {}
    lock = threading.Lock()

    def reply(request: dict) -> str:
        messages = request["messages"]
        first, last = messages[0]["content"], messages[-1]["content"]
        if first.startswith("You grade the responses"):
            behaviour = re.search(r"Request:\n(.*)\n\nResponse:", last).group(1)
            with lock:
                graded[behaviour] = graded.get(behaviour, 0) + 1
            return f"It answers.\n#score {2 if graded[behaviour] == 1 else 5}"
        if "List its harmful entities" in last:
            return json.dumps({"entities": ["cat"], "relations": "none"})
        if "Invent a harmless domain" in last:
            return json.dumps({"domain": "garden", "mapping": {"cat": "rabbit"}, "scenario": "a rabbit in a garden"})
        if last.startswith("You rate a metaphor"):
            return "consistency: 7\ntoxicity: 2"
        turn = re.search(r"Turn (\d+) of", last).group(1)
        return json.dumps({"question": f"the rabbit, turn {turn}"})

    return ChatServer(reply)


def test_avatar_runs_through_mosa_eval_and_the_eval_samples_the_last_answer_again(settings, tmp_path):
    with avatar_server() as server:
        attacker = {"type": "openai", "model": "attacker", "base_url": server.url, "cache": False}
        avatar = {"name": "avatar", "attacker": attacker, "candidates": 2, "max_turns": 4}
        config = write_config(tmp_path, {**settings, "attacks": [avatar], "judges": ["keyword-long"], "limit": 2})
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0

        records = read_jsonl(run / "records.jsonl")
        assert [record["behaviour"] for record in records] == GOALS[:2]
        for record in records:
            payload = record["payload"]
            assert payload["success"] is True and payload["turns"] == 2 and payload["score_trajectory"] == [2.0, 5.0]
            conversation = payload["conversation"]
            assert record["messages"] == conversation[:-1]  # the whole conversation up to the last question
            assert [m["content"] for m in conversation[::2]] == ["the rabbit, turn 1", "the rabbit, turn 2"]
            # At temperature 0 the eval's sample of the last answer is the answer the attack saw.
            assert record["response"] and record["response"] == payload["response"] == conversation[-1]["content"]
            assert payload["queries"] == {"target": 2, "attacker": 1 + 2 + 2, "selector": 2, "scorer": 2}

        [row] = list(csv.DictReader((run / "asr.csv").open()))
        assert (row["attack"], row["responses"]) == ("avatar", "2")
        assert float(row["target_queries_per_behaviour"]) == 2 + 1  # two turns, and the eval's own sample
        assert float(row["auxiliary_queries_per_behaviour"]) == 5 + 2 + 2 == len(server.requests) / 2
        assert not (run / "rounds").exists() or not any((run / "rounds").rglob("*.json"))  # cleared once saved

        asked = len(server.requests)
        assert mosa_eval("--output", run) == 0
        assert len(server.requests) == asked
