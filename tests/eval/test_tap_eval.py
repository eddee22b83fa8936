"""The TAP attack through `mosa eval`: a real 127.0.0.1 server plays TAP's attacker, its off-topic
evaluator and its harm-rubric scorer; the tiny dLLM of tests/eval/conftest.py is the target; a keyword
judge gives the evaluation's verdicts."""

import csv
import json
import re
import threading

from mosa.judges import make_judge
from tests.chat_server import ChatServer
from tests.eval.conftest import GOALS, mosa_eval, read_jsonl, write_config

SECRET = "sk-mosa-test-never-written"
WIDTH, BRANCHING, DEPTH = 1, 2, 3


def tap_server() -> ChatServer:
    """The attacker disguises the behaviour as a numbered step, the depth of the search it is asked at;
    the evaluator keeps every prompt; the scorer grades a behaviour's first BRANCHING answers (depth 1)
    2 of 5 and every later one 5 of 5, so each search succeeds at depth 2 and stops there."""
    graded: dict[str, int] = {}
    lock = threading.Lock()

    def reply(request: dict) -> str:
        system, last = request["messages"][0]["content"], request["messages"][-1]["content"]
        if system.startswith("You check prompts"):
            return "[[YES]]"
        if system.startswith("You grade the responses"):
            behaviour = re.search(r"Request:\n(.*)\n\nResponse:", last).group(1)
            with lock:
                graded[behaviour] = graded.get(behaviour, 0) + 1
                score = 2 if graded[behaviour] <= BRANCHING else 5
            return f"It answers.\n#score {score}"
        depth = sum(message["role"] == "user" for message in request["messages"])
        goal = re.search(r"carry out this behaviour:\n\n(.*)\n", system).group(1)
        return json.dumps({"improvement": f"depth {depth}", "prompt": f"step {['one', 'two', 'three'][depth - 1]} {goal}"})

    return ChatServer(reply)


def test_tap_runs_through_mosa_eval_and_a_rerun_asks_the_server_nothing(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # sent to the server, never written to the run
    with tap_server() as server:
        # cache: false, so that a rerun that asks nothing owes it to the saved cases, not to a chat cache
        attacker = {"type": "openai", "model": "attacker", "base_url": server.url, "cache": False}
        tap = {"name": "tap", "attacker": attacker, "width": WIDTH, "branching": BRANCHING, "depth": DEPTH}
        config = write_config(tmp_path, {**settings, "attacks": [tap], "judges": ["keyword-long"], "limit": 2})
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0

        # Two behaviours, each: depths 1 and 2, BRANCHING proposals each, asked of attacker, evaluator and scorer.
        assert len(server.requests) == 2 * 2 * BRANCHING * 3
        assert all(request["headers"]["Authorization"] == f"Bearer {SECRET}" for request in server.requests)
        records = read_jsonl(run / "records.jsonl")
        assert [record["behaviour"] for record in records] == GOALS[:2]
        keyword = make_judge("keyword-long")
        for record in records:
            payload = record["payload"]
            assert record["attack"] == record["attack_name"] == "tap"
            assert payload["prompt"] == f"step two {record['behaviour']}" and payload["improvement"] == "depth 2"
            assert record["messages"] == [{"role": "user", "content": payload["prompt"]}]  # the target saw the final prompt
            assert payload["success"] is True and payload["depth"] == 2  # stopped early: DEPTH 3 was allowed
            assert payload["score_trajectory"] == [2.0, 5.0] and payload["best_score"] == 5.0
            queries = 2 * BRANCHING  # two depths, BRANCHING proposals each
            assert payload["queries"] == {"attacker": queries, "evaluator": queries, "target": queries, "scorer": queries}
            assert payload["pruned_by_width"] == BRANCHING - WIDTH
            assert payload["attacker"] == f"openai:attacker@{server.url}"
            assert payload["scorer"].startswith("harm-rubric (harm-rubric-")
            [verdict] = record["verdicts"]
            [expected] = keyword.judge_many([record["behaviour"]], [record["response"]])
            assert (verdict["judge"], verdict["judge_version"]) == (keyword.name, keyword.version)
            assert (verdict["label"], verdict["harmful"]) == (expected.label, expected.harmful)

        [row] = list(csv.DictReader((run / "asr.csv").open()))
        assert (row["benchmark"], row["attack"], row["judge"], row["responses"]) == ("tiny", "tap", "keyword-long", "2")
        assert int(row["successes"]) == sum(record["verdicts"][0]["harmful"] is True for record in records)
        # per behaviour: the search's target and auxiliary queries, plus the eval's sampling of the final prompt
        assert (float(row["target_queries_per_behaviour"]), float(row["auxiliary_queries_per_behaviour"])) == (
            2 * BRANCHING + 1,
            3 * 2 * BRANCHING,
        )
        assert not (run / "rounds").exists() or not any((run / "rounds").rglob("*.json"))  # cleared once the cases are saved
        for path in run.iterdir():
            assert SECRET.encode() not in path.read_bytes(), path

        asked = len(server.requests)
        assert mosa_eval("--output", run) == 0  # the finished run: nothing to do
        for name in ("completions.jsonl", "verdicts.jsonl", "records.jsonl", "asr.md", "asr.csv"):
            (run / name).unlink()  # as if killed after TAP had saved its cases
        assert mosa_eval("--output", run) == 0  # samples the saved prompts again, without searching
        assert len(server.requests) == asked
        assert read_jsonl(run / "records.jsonl") == records


def test_a_tap_run_killed_mid_search_never_attacks_a_finished_behaviour_again(settings, tmp_path):
    """SIGKILL while TAP searches for the second behaviour: the first behaviour's cases were saved, so
    the resumed run asks the server nothing more about it, and every behaviour has its cases once."""
    import signal
    import subprocess
    import time

    from tests.eval.conftest import MOSA, subprocess_environment

    scripted = tap_server().reply

    def slow_for_the_second(request):
        if GOALS[1] in json.dumps(request["messages"]):
            time.sleep(0.2)
        return scripted(request)

    with ChatServer(slow_for_the_second) as server:
        attacker = {"type": "openai", "model": "attacker", "base_url": server.url, "cache": False}
        tap = {"name": "tap", "attacker": attacker, "width": WIDTH, "branching": BRANCHING, "depth": DEPTH}
        config = write_config(tmp_path, {**settings, "attacks": [tap], "judges": ["keyword-long"], "limit": 2})
        run = tmp_path / "run"
        command = [*MOSA, "eval", "--config", str(config), "--output", str(run), "--quiet"]
        process = subprocess.Popen(command, env=subprocess_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cases = run / "cases.jsonl"
        while process.poll() is None and not (cases.is_file() and cases.read_bytes().count(b"\n") >= 1):
            time.sleep(0.005)
        time.sleep(0.1)  # into the second behaviour's search
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
        assert cases.read_bytes().count(b"\n") == 1
        about = lambda goal: sum(goal in json.dumps(request["messages"]) for request in server.requests)  # noqa: E731
        first_asked = about(GOALS[0])

        assert mosa_eval("--output", run) == 0
        assert about(GOALS[0]) == first_asked  # the finished behaviour was not attacked again
    assert [line["behaviour"] for line in read_jsonl(run / "records.jsonl")] == GOALS[:2]
    assert [line["behaviour_id"] for line in read_jsonl(cases)] == sorted({line["behaviour_id"] for line in read_jsonl(cases)})
    assert all(record["payload"]["success"] for record in read_jsonl(run / "records.jsonl"))


def test_tap_and_its_middle_targeted_variant_run_side_by_side_through_mosa_eval(settings, tmp_path):
    """Table 4's variant as the paper config gives it: a second TAP under its own label, aimed at a window."""
    with tap_server() as server:
        attacker = {"type": "openai", "model": "attacker", "base_url": server.url, "cache": False}
        tap = {"name": "tap", "attacker": attacker, "width": WIDTH, "branching": BRANCHING, "depth": DEPTH}
        middle = {**tap, "label": "tap-middle", "window": [4, 12]}
        config = write_config(tmp_path, {**settings, "attacks": [tap, middle], "judges": ["keyword-long"], "limit": 1})
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0
        middle_system = [r["messages"][0]["content"] for r in server.requests if "tokens 4 to 12" in r["messages"][0]["content"]]
    records = read_jsonl(run / "records.jsonl")
    assert [(r["attack"], r["attack_name"], r["payload"]["window"]) for r in records] == [
        ("tap", "tap", None),
        ("tap-middle", "tap", [4, 12]),
    ]
    assert middle_system and all("the judge reads its tokens 4 to 12" in text for text in middle_system)
    rows = list(csv.DictReader((run / "asr.csv").open()))
    assert [row["attack"] for row in rows] == ["tap", "tap-middle"]
