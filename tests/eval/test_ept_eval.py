"""The EPT attack through `mosa eval`: a real 127.0.0.1 server plays the Llama-Guard-style guard (and,
by default, the scorer that picks the final prefix); the tiny dLLM of tests/eval/conftest.py is the
target, at the response's start and in the middle-targeted variant's window."""

import csv

from tests.chat_server import ChatServer
from tests.eval.conftest import GOALS, mosa_eval, read_jsonl, write_config


def test_ept_runs_through_mosa_eval_and_a_rerun_asks_the_guard_nothing(settings, tmp_path):
    # Every sentence is unsafe: each one the target writes after the prefix is a child, so the tree
    # grows until the response (or the window) has no room left.
    with ChatServer(lambda request: "unsafe\nS2") as server:
        guard = {"type": "openai", "model": "guard", "base_url": server.url, "cache": False}
        ept = {"name": "ept", "guard": guard, "default_prefix": "sure here is", "samples": 3}
        middle = {**ept, "label": "ept-window", "window": [4, 12]}
        config = write_config(tmp_path, {**settings, "attacks": [ept, middle], "judges": ["keyword-long"], "limit": 2})
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0

        records = read_jsonl(run / "records.jsonl")
        assert sorted((record["attack"], record["behaviour"]) for record in records) == sorted(
            (attack, goal) for attack in ("ept", "ept-window") for goal in GOALS[:2]
        )
        for record in records:
            payload = record["payload"]
            start = 0 if record["attack"] == "ept" else 4
            assert record["attack_name"] == "ept" and payload["window"] == (None if start == 0 else [4, 12])
            assert record["messages"] == [{"role": "user", "content": record["behaviour"]}]  # the plain request
            assert record["prefill"] == {str(start): payload["prefix"]} and payload["prefix"].startswith("sure here is ")
            assert payload["success"] is True and payload["best_score"] == 1.0  # the guard's verdict on the path
            # the eval sampled the rest of the answer around the chosen prefix
            assert record["commit_step"][start : start + len(payload["prefix"].split())] == [-1] * len(payload["prefix"].split())
            queries = payload["queries"]
            assert queries["target"] == 3 * payload["tree"]["rounds"] and queries["scorer"] == payload["tree"]["leaves"]
            assert payload["tree"]["stopped"]["room"] >= 1
        assert len(server.requests) == sum(r["payload"]["queries"]["guard"] + r["payload"]["queries"]["scorer"] for r in records)
        assert all([m["role"] for m in request["messages"]] == ["user", "assistant"] for request in server.requests)

        rows = {row["attack"]: row for row in csv.DictReader((run / "asr.csv").open())}
        for attack, row in rows.items():
            mine = [record["payload"]["queries"] for record in records if record["attack"] == attack]
            assert float(row["target_queries_per_behaviour"]) == sum(q["target"] + 1 for q in mine) / 2
            assert float(row["auxiliary_queries_per_behaviour"]) == sum(q["guard"] + q["scorer"] for q in mine) / 2
        assert not (run / "rounds").exists() or not any((run / "rounds").rglob("*.json"))  # cleared once the cases are saved

        asked = len(server.requests)
        for name in ("completions.jsonl", "verdicts.jsonl", "records.jsonl", "asr.md", "asr.csv"):
            (run / name).unlink()  # as if killed after EPT had saved its cases
        assert mosa_eval("--output", run) == 0  # samples the saved cases again, without searching
        assert len(server.requests) == asked
        assert read_jsonl(run / "records.jsonl") == records
