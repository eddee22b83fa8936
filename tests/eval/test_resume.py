"""Runs killed with SIGKILL, judge endpoints that are down, and two processes under accelerate launch."""

import signal
import subprocess
import time
from pathlib import Path

from mosa.eval import runner
from tests.chat_server import ChatServer, Reply
from tests.conftest import accelerate_launch, free_port
from tests.eval.conftest import MOSA, mosa_eval, read_jsonl, subprocess_environment, write_config


def keys(path: Path) -> list[tuple]:
    """What names an item of a stage: a behaviour's cases, a case's response, a response's verdict by a judge."""
    return [(r["benchmark"], r["attack"], r.get("prompt_id", r.get("behaviour_id")), r.get("judge")) for r in read_jsonl(path)]


def test_a_run_killed_with_sigkill_resumes_with_no_lost_and_no_duplicated_records(settings, tmp_path):
    # 12 behaviours x 4 cases, 2 per batch and 32 denoising steps: long enough to be killed half way.
    settings = {**settings, "batch_size": 2, "sampler": {"gen_length": 32, "steps": 32, "block_length": 8}}
    config = write_config(tmp_path, settings)
    assert mosa_eval("--config", config, "--output", tmp_path / "whole") == 0
    expected = read_jsonl(tmp_path / "whole" / "records.jsonl")

    killed = tmp_path / "killed"
    command = [*MOSA, "eval", "--config", str(config), "--output", str(killed), "--quiet"]
    process = subprocess.Popen(command, env=subprocess_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    completions = killed / "completions.jsonl"
    while process.poll() is None and (not completions.is_file() or completions.read_bytes().count(b"\n") < 6):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    assert completions.read_bytes().count(b"\n") < len(expected)  # it was killed half way
    assert not (killed / "records.jsonl").exists()

    assert mosa_eval("--output", killed) == 0  # resumed with the run's own config
    assert sorted(keys(completions)) == sorted(set(keys(completions))) == sorted(keys(tmp_path / "whole" / "completions.jsonl"))
    assert read_jsonl(killed / "records.jsonl") == expected


def test_a_judge_endpoint_that_is_down_stops_the_run_resumably(settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mosa-test-never-written")
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there yet
    judges = ["keyword-gcg", {"name": "strongreject", "backend": f"openai:judge@{url}?cache=false&retries=2&backoff=0.01"}]
    config = write_config(tmp_path, {**settings, "attacks": ["none"], "judges": judges, "limit": 4})
    run = tmp_path / "run"
    assert mosa_eval("--config", config, "--output", run) == 2
    *retries, error = capsys.readouterr().err.splitlines()
    assert error == f"mosa: error: {url}/chat/completions refused the connection after 3 tries; start the server or fix base_url"
    assert len(retries) == 8 and all(line.startswith(f"openai:judge@{url}: refused the connection; retry ") for line in retries)
    assert len(read_jsonl(run / "completions.jsonl")) == 4  # every response is kept
    assert [v["judge"] for v in read_jsonl(run / "verdicts.jsonl")] == ["keyword-gcg"] * 4
    assert not (run / "records.jsonl").exists()

    def no_model(*args):
        raise AssertionError("the responses were kept; the model is not needed to finish the verdicts")

    monkeypatch.setattr(runner, "load_target_model", no_model)
    with ChatServer(lambda request: "1.b 0\n2.b 4\n3.b 5", port=int(url.split(":")[-1].split("/")[0])) as server:
        assert mosa_eval("--config", config, "--output", run) == 0
    assert len(server.requests) == 4
    records = read_jsonl(run / "records.jsonl")
    assert [[v["judge"] for v in r["verdicts"]] for r in records] == [["keyword-gcg", "strongreject"]] * 4
    assert all(r["verdicts"][1]["label"] == "compliant" and r["verdicts"][1]["score"] == 0.875 for r in records)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-mosa-test-never-written"
    for path in run.iterdir():
        assert b"sk-mosa-test-never-written" not in path.read_bytes(), path


def test_a_response_the_judge_server_rejects_is_recorded_and_the_run_completes(settings, tmp_path, capsys):
    def reply(request):
        judged = request["messages"][-1]["content"]
        if "how are you two" in judged:
            return Reply("the request (9000 tokens) exceeds the available context size (2048 tokens)", 400)
        if "how are you three" in judged:
            return Reply("#overall_reasoning the user asks", finish_reason="length")
        return "1.b 0\n2.b 4\n3.b 5"

    with ChatServer(reply) as server:
        backend = {"type": "openai", "model": "judge", "base_url": server.url, "cache_dir": str(tmp_path / "cache")}
        judges = [{"name": "strongreject", "backend": backend}]
        config = write_config(tmp_path, {**settings, "attacks": ["none"], "judges": judges, "limit": 4})
        run = tmp_path / "run"
        assert mosa_eval("--config", config, "--output", run) == 0
        assert len(server.requests) == 4  # one per response, the rejected one included, none asked twice
        assert mosa_eval("--config", config, "--output", run) == 0
        assert len(server.requests) == 4  # the rerun has nothing left to ask
    # In the order of the behaviours: how are you one, two, three; what is the cat one.
    judged, rejected, truncated, judged_too = read_jsonl(run / "verdicts.jsonl")
    assert (rejected["label"], rejected["harmful"]) == ("error", None)
    assert rejected["error"].startswith(f"{server.url}/chat/completions rejected the request (HTTP 400: ")
    assert (truncated["label"], truncated["truncated"]) == ("unparseable", True)
    assert "cut off at its max_tokens" in truncated["error"]
    assert [(v["label"], v["truncated"], v["error"]) for v in (judged, judged_too)] == [("compliant", False, None)] * 2
    said = f"eval: judge strongreject: tiny/none/{rejected['prompt_id']}: {server.url}/chat/completions rejected the request"
    assert said in capsys.readouterr().out
    # The records carry both fields; the table leaves the rejected and the unparseable response out
    # of the judged denominator, counts them as failures over all behaviours, and notes the cut-off one.
    records = read_jsonl(run / "records.jsonl")
    fields = [{key: v[key] for key in ("label", "truncated", "error")} for r in records for v in r["verdicts"]]
    assert fields == [{key: v[key] for key in ("label", "truncated", "error")} for v in (judged, rejected, truncated, judged_too)]
    table = (run / "asr.md").read_text()
    assert "| tiny | none | strongreject | 4 | 4 | 0 | 1 | 1 | 2 | 2 | 100.0% | 34.2-100.0% | 50.0% | 15.0-85.0% |" in table
    assert "max_tokens to have them whole): 1 of 4 in tiny / none / strongreject." in table


def test_two_processes_under_accelerate_launch_give_the_records_of_one(settings, tmp_path):
    config = write_config(tmp_path, settings)
    assert mosa_eval("--config", config, "--output", tmp_path / "one") == 0
    launch = accelerate_launch("-m", "mosa", "eval", "--config", str(config), "--output", str(tmp_path / "two"), "--quiet")
    finished = subprocess.run(launch, env=subprocess_environment(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    two = tmp_path / "two"
    for stage in ("cases", "completions", "verdicts"):  # both processes worked, on different items
        main_keys, other_keys = keys(two / f"{stage}.jsonl"), keys(two / f"{stage}.rank-1.jsonl")
        assert main_keys and other_keys and not set(main_keys) & set(other_keys)
    assert read_jsonl(two / "records.jsonl") == read_jsonl(tmp_path / "one" / "records.jsonl")
    assert (two / "asr.csv").read_text() == (tmp_path / "one" / "asr.csv").read_text()
