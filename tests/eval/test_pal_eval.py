"""PAL through `mosa eval`: a tiny random causal Llama checkpoint is the proxy, the tiny dLLM of
tests/eval/conftest.py the target, a keyword judge gives the verdicts."""

import csv
import json
import signal
import subprocess
import time

import pytest

from tests.conftest import save_causal_llama
from tests.eval.conftest import GOALS, MOSA, mosa_eval, read_jsonl, subprocess_environment, write_config

STEPS, PER_STEP = 2, 2


def pal_options(proxy_dir, steps=STEPS):
    return {
        "name": "pal",
        "proxy": proxy_dir,
        "init": "the",
        "suffix_length": 3,
        "num_steps": steps,
        "batch_size": 4,
        "num_target_query_per_step": PER_STEP,
        "top_k": 8,
    }


@pytest.fixture(scope="module")
def proxy_dir(tokenizer, tmp_path_factory):
    return str(save_causal_llama(tokenizer, tmp_path_factory.mktemp("proxy")))


def test_pal_runs_through_mosa_eval_and_records_its_queries(settings, proxy_dir, tmp_path):
    config = write_config(tmp_path, {**settings, "attacks": [pal_options(proxy_dir)], "judges": ["keyword-long"], "limit": 2})
    run = tmp_path / "run"
    assert mosa_eval("--config", config, "--output", run) == 0

    records = read_jsonl(run / "records.jsonl")
    assert [record["behaviour"] for record in records] == GOALS[:2]
    for record in records:
        payload = record["payload"]
        assert record["attack"] == "pal" and payload["target"] == "sure here is"
        assert payload["prompt"] == f"{record['behaviour']} {payload['suffix']}"
        assert record["messages"] == [{"role": "user", "content": payload["prompt"]}]
        assert len(payload["suffix"].split()) == 3 and payload["steps"] == STEPS and payload["stopped"] == "num_steps"
        assert len(payload["score_trajectory"]) == STEPS + 1
        # a success check per step (step 0 too), and at least a position read per candidate sent
        reads = payload["queries"]["target"] - (1 + STEPS)
        assert 1 + STEPS * PER_STEP <= reads <= payload["target_logprob_passes"]
        assert payload["queries"]["proxy"] == STEPS * (1 + 4)  # a gradient and 4 candidates a step
    [row] = list(csv.DictReader((run / "asr.csv").open()))
    per_behaviour = lambda role: sum(record["payload"]["queries"][role] for record in records) / 2  # noqa: E731
    # the attack's target queries, plus the eval's sampling of the final prompt; the proxy's are auxiliary
    assert float(row["target_queries_per_behaviour"]) == per_behaviour("target") + 1
    assert float(row["auxiliary_queries_per_behaviour"]) == per_behaviour("proxy")
    assert not (run / "rounds").exists() or not any((run / "rounds").rglob("*.json"))  # cleared once the cases are saved


def test_a_pal_run_killed_mid_search_resumes_at_the_last_step_saved(settings, proxy_dir, tmp_path):
    """SIGKILL while PAL searches: the rerun starts from the last step saved and ends where an
    uninterrupted run ends."""
    steps = 30
    attack = {**settings, "attacks": [pal_options(proxy_dir, steps)], "judges": ["keyword-long"], "limit": 1}
    (tmp_path / "whole").mkdir()
    assert mosa_eval("--config", write_config(tmp_path / "whole", attack), "--output", tmp_path / "whole" / "run") == 0

    run = tmp_path / "run"
    command = [*MOSA, "eval", "--config", str(write_config(tmp_path, attack)), "--output", str(run), "--quiet"]
    process = subprocess.Popen(command, env=subprocess_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    saved = lambda: [json.loads(path.read_text())["state"]["step"] for path in (run / "rounds").rglob("*.json")]  # noqa: E731
    while process.poll() is None and not any(step >= 2 for step in saved()):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    [killed_at] = saved()
    assert 2 <= killed_at < steps  # killed mid-search, its state saved

    assert mosa_eval("--output", run) == 0
    [resumed] = read_jsonl(run / "records.jsonl")
    [whole] = read_jsonl(tmp_path / "whole" / "run" / "records.jsonl")
    assert resumed["payload"] == whole["payload"] and resumed["messages"] == whole["messages"]
    assert resumed["payload"]["steps"] == steps
