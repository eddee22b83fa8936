"""Running generated code to score it (HumanEval's pass@k): each program in a fresh Python
subprocess with a time limit, never inside the evaluating process.

lm-eval's own `humaneval` task scores with Hugging Face evaluate's `code_eval`, which (a) is
downloaded from the hub when lm-eval imports the task, so it cannot run offline, and (b) runs each
program with `exec` in a `multiprocessing.Process` forked from the evaluating process: a copy of
that process, with the model, its memory and its environment, in which the generated code runs.
Here each program is a file run by `python -I` (isolated mode: no user site-packages, no PYTHON*
variables) in an empty temporary directory, with an environment reduced to PATH and a locale (no
API keys, no tokens), its own session (so that a timeout kills everything it started), a limit on
its memory and on the size of files it writes, and a wall-clock limit. That is a separate process,
not a sandbox: the code still runs as the user, with the user's file permissions and network.
Which is why lm-eval's switch (`confirm_run_unsafe_code`, `mosa utility --confirm-run-unsafe-code`)
must be given before any of it runs.

pass@k is the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models Trained
on Code": with n samples of which c pass, 1 - C(n-c, k) / C(n, k).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import comb

TIMEOUT_SECONDS = 3.0  # as code_eval's default: HumanEval's tests take milliseconds
MEMORY_BYTES = 4 * 1024**3  # address space of a program; generous for tests, stops a runaway allocation
FILE_BYTES = 64 * 1024**2  # the largest file a program may write
WORKERS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    result: str  # "passed", "timed out", or the last line of the program's error output


def run_program(program: str, timeout: float = TIMEOUT_SECONDS) -> Outcome:
    """Run `program` in a fresh Python subprocess; it passes if it exits with status 0 in time."""
    with tempfile.TemporaryDirectory(prefix="mosa-code-") as directory:
        path = os.path.join(directory, "program.py")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(program)
        process = subprocess.Popen(
            [sys.executable, "-I", path],
            cwd=directory,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills its children too
            preexec_fn=_limit_resources,
        )
        try:
            _, error = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return Outcome(False, "timed out")
    if process.returncode == 0:
        return Outcome(True, "passed")
    lines = error.decode("utf-8", "replace").strip().splitlines()
    return Outcome(False, lines[-1] if lines else f"exit status {process.returncode}")


def _limit_resources() -> None:  # runs in the child, before Python starts
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))


def run_programs(programs: list[str], timeout: float = TIMEOUT_SECONDS) -> list[Outcome]:
    """Several programs, each in its own subprocess, a few at a time (threads only wait on them)."""
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda program: run_program(program, timeout), programs))


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The probability that at least one of k samples drawn from `samples` (of which `correct` pass) passes."""
    if samples - correct < k:
        return 1.0
    return 1.0 - comb(samples - correct, k) / comb(samples, k)
