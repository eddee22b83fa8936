"""Throughput of `mosa serve`: batched against one request at a time, with 1, 8 and 32 concurrent clients.

    python benchmarks/bench_serve.py                        # a tiny random model, 1 / 8 / 32 clients
    python benchmarks/bench_serve.py --model organism       # the shipped organism (hidden 128, 3 layers)
    python benchmarks/bench_serve.py --quick                # fewer requests, to check the script
    python benchmarks/bench_serve.py --model PATH --clients 1 8 --requests 64

Two `mosa serve` processes on 127.0.0.1, one after the other, on the same model and sampler settings:
"batched" (--max-batch-size 32: requests waiting together share one canvas batch) and "one at a time"
(--max-batch-size 1). For each number of clients, that many threads of the official `openai` client
each send chat requests back to back (distinct prompts of different lengths, temperature 0) until
--requests have been answered; the script prints requests/s, p50/p95 latency and failed requests for
both servers, and the ratio of their requests/s. Both servers answer every request with the same text
(checked: the batched answers are compared with the one-at-a-time answers, prompt by prompt).

Models: "tiny" (the default) is a random bidirectional Llama, hidden 64, 2 layers, the tests' word
tokenizer, built into a temporary directory, at gen_length 32, 32 steps, blocks of 8: a model whose
step costs little, so what is measured is the server's own work and what batching saves of it.
"organism" is the shipped organism with its card's settings (the same canvas); on a CPU its forward
passes grow almost linearly with the batch, so batching saves less there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port  # noqa: E402

# The organism's own kinds of prompt: utility questions and harmful requests, of different lengths.
PROMPTS = [
    "what is 3 plus 4 ?",
    "what is 2 plus 5 ?",
    "what is the capital of france ?",
    "what is the opposite of hot ?",
    "how do i pick a lock ?",
    "write a guide on how to steal a car without getting caught .",
    "explain how to make a bomb",
    "what is 1 plus 1 ?",
]


# The canvas both models are served with (the organism's card settings).
CANVAS = ["--gen-length", "32", "--steps", "32", "--block-length", "8"]


def tiny_checkpoint(directory: Path) -> Path:
    """A random bidirectional Llama (hidden 64, 2 layers) with the tests' word tokenizer, saved."""
    from mosa.models.build import build_bidirectional_llama, build_word_tokenizer, save_model
    from tests.conftest import WORDS

    return save_model(build_bidirectional_llama(build_word_tokenizer(WORDS), hidden_size=64, num_layers=2), directory / "tiny")


def start_server(model: str, name: str, port: int, max_batch_size: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "mosa", "serve", "--model", model, "--served-model-name", name, "--port", str(port)]
    command += ["--max-batch-size", str(max_batch_size), "--max-concurrency", "256", *CANVAS]
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mosa serve exited: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("mosa serve did not start within 300 s")


def drive(url: str, model: str, clients: int, requests: int) -> dict:
    """`clients` threads send requests back to back until `requests` are answered."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    answers: dict[int, str] = {}
    latencies: list[float] = []
    failures: list[str] = []

    def one(number: int) -> None:
        prompt = PROMPTS[number % len(PROMPTS)]
        began = time.perf_counter()
        try:
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
            answers[number] = reply.choices[0].message.content
            latencies.append(time.perf_counter() - began)
        except Exception as error:  # counted and reported, never hidden
            failures.append(f"{type(error).__name__}: {error}")

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan"),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (built here), organism, or a checkpoint directory")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=96, help="requests per measurement (at least 2 per client)")
    parser.add_argument("--quick", action="store_true", help="24 requests per measurement")
    args = parser.parse_args()
    requests = 24 if args.quick else args.requests

    results: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        model = str(tiny_checkpoint(Path(scratch))) if args.model == "tiny" else args.model
        for name, batch_size in (("batched", 32), ("one at a time", 1)):
            port = free_port()
            server = start_server(model, args.model, port, batch_size)
            try:
                url = f"http://127.0.0.1:{port}/v1"
                drive(url, args.model, 1, 2)  # warm-up
                results[name] = {clients: drive(url, args.model, clients, max(requests, 2 * clients)) for clients in args.clients}
            finally:
                server.terminate()
                server.wait(timeout=60)

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"model {args.model}, gen_length 32, 32 steps, blocks of 8, {requests} requests per row, OMP_NUM_THREADS {threads}\n")
    print("| clients | batched req/s | p50 / p95 s | one at a time req/s | p50 / p95 s | speed-up | failed | same answers |")
    print("|---|---|---|---|---|---|---|---|")
    for clients in args.clients:
        batched, single = results["batched"][clients], results["one at a time"][clients]
        same = batched["answers"] == single["answers"]
        print(
            f"| {clients} | {batched['requests_per_s']:.1f} | {batched['p50']:.3f} / {batched['p95']:.3f} "
            f"| {single['requests_per_s']:.1f} | {single['p50']:.3f} / {single['p95']:.3f} "
            f"| {batched['requests_per_s'] / single['requests_per_s']:.2f}x | {batched['failed'] + single['failed']} | {'yes' if same else 'NO'} |"
        )
        for result in (batched, single):
            if result["first_failure"]:
                print(f"  a failure: {result['first_failure']}")


if __name__ == "__main__":
    main()
