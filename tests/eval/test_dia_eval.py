"""DIA through `mosa eval`: a real 127.0.0.1 server plays DIA's helper and its harm-rubric scorer; a tiny
dLLM with room for DIA-II's dialogue (about 1,200 tokens) is the target; a keyword judge gives the verdicts."""

import csv
import json
import re
import threading

import pytest

from mosa.models.build import save_model
from tests.chat_server import ChatServer
from tests.conftest import tiny_llama
from tests.eval.conftest import GOALS, mosa_eval, read_jsonl, write_config

SUBSTITUTES = {"cat": "dog", "you": "we"}


@pytest.fixture(scope="module")
def roomy_model_dir(tokenizer, tmp_path_factory):
    lm = tiny_llama(tokenizer, seed=3, max_positions=2048)
    return save_model(lm, tmp_path_factory.mktemp("roomy-model"))


def dia_server() -> ChatServer:
    """The helper swaps SUBSTITUTES and answers every rewriting step; the scorer grades a behaviour's
    first answer 2 of 5 and every later one 5, so each behaviour succeeds at its first rewrite."""
    graded: dict[str, int] = {}
    lock = threading.Lock()

    def reply(request: dict) -> str:
        messages = request["messages"]
        last = messages[-1]["content"]
        if messages[0]["content"].startswith("You grade the responses"):
            behaviour = re.search(r"Request:\n(.*)\n\nResponse:", last).group(1)
            with lock:
                graded[behaviour] = graded.get(behaviour, 0) + 1
            return f"It answers.\n#score {2 if graded[behaviour] == 1 else 5}"
        if last.startswith("Please help me extract keywords"):
            text = re.search(r'"""(.*)"""', last, re.S).group(1)
            return "Keywords: " + json.dumps([word for word in SUBSTITUTES if word in text.split()])
        if last.startswith("Please help me sanitize"):
            text = re.search(r"Harmful Text: (.*)\nKeywords:", last.split("Now, please output")[1]).group(1)
            return "Keyword2alter: " + json.dumps({word: new for word, new in SUBSTITUTES.items() if word in text.split()})
        if "safe and ethical reason" in last:
            return "To learn."
        return "Now " + messages[2]["content"]  # a reordered or simplified sentence: the one it was shown

    return ChatServer(reply)


def test_dia_runs_through_mosa_eval_and_the_eval_samples_the_answer_the_attack_scored(settings, roomy_model_dir, tmp_path):
    with dia_server() as server:
        helper = {"type": "openai", "model": "helper", "base_url": server.url, "cache": False}
        dia = {"name": "dia", "helper": helper, "max_rewrite_tries": 3}
        config = write_config(
            tmp_path, {**settings, "model": str(roomy_model_dir), "attacks": [dia], "judges": ["keyword-long"], "limit": 2}
        )
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0

        records = read_jsonl(run / "records.jsonl")
        assert [record["behaviour"] for record in records] == GOALS[:2]
        helper_queries = 0
        for record in records:
            payload = record["payload"]
            assert payload["success"] is True and payload["try"] == 1 and payload["tries"] == 2  # stopped at the first rewrite
            assert payload["score_trajectory"] == [2.0, 5.0] and payload["method"] == "task-solving"
            assert payload["instructions"][0] == record["behaviour"] != payload["instruction"]
            assert [m["role"] for m in record["messages"]][-2:] == ["system", "user"] and len(record["messages"]) == 18
            # At temperature 0 the eval's answer to the saved dialogue is the answer the attack scored.
            assert record["response"] and record["response"] == payload["response"]
            assert payload["queries"]["target"] == 2 and payload["queries"]["scorer"] == 2
            helper_queries += payload["queries"]["helper"]
            assert payload["scorer"].startswith("harm-rubric (") and payload["helper"] == f"openai:helper@{server.url}"
        assert helper_queries + 4 == len(server.requests)  # every request to the server is counted in a payload

        [row] = list(csv.DictReader((run / "asr.csv").open()))
        assert (row["attack"], row["responses"]) == ("dia", "2")
        assert float(row["target_queries_per_behaviour"]) == 2 + 1  # two tries, and the eval's own sample
        assert float(row["auxiliary_queries_per_behaviour"]) == (helper_queries + 4) / 2

        asked = len(server.requests)
        assert mosa_eval("--output", run) == 0  # finished: nothing asked again
        assert len(server.requests) == asked
