"""The run directory: the resolved config and append-only JSONL stage files that survive a kill.

    runs/x/config.json              the resolved EvalConfig; a rerun with another config is refused
    runs/x/cases.jsonl              stage 1: one line per (benchmark, attack, behaviour): its test cases
    runs/x/completions.jsonl        stage 2: one line per test case: the response and its decoding order
    runs/x/verdicts.jsonl           stage 3: one line per (response, judge): the verdict
    runs/x/records.jsonl, asr.md, asr.csv    written at the end from the stage files (mosa.eval.tables)

Under `accelerate launch`, process K > 0 appends to `<stage>.rank-K.jsonl` instead; readers read a
stage's files together, so nothing is merged and a rerun with another number of processes reads
what every earlier process wrote.

Each batch of lines is written with one write(), flushed and fsynced before the next batch starts,
so a kill loses at most the batch in flight, which can leave the last line torn (cut mid-line, no
newline): `repair` cuts it off before the run resumes and the item is done again. A line that does
not parse anywhere else was not written by mosa eval, and is reported rather than guessed at.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from mosa.errors import MosaError
from mosa.eval.config import differences
from mosa.paths import write_atomically

STAGES = ("cases", "completions", "verdicts")
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"


def stage_file(directory: Path, stage: str, rank: int = 0) -> Path:
    return directory / (f"{stage}.jsonl" if rank == 0 else f"{stage}.rank-{rank}.jsonl")


def stage_files(directory: Path, stage: str) -> list[Path]:
    """Every file of a stage: the main process's, then the other processes' in rank order."""
    others = sorted(directory.glob(f"{stage}.rank-*.jsonl"), key=lambda path: int(path.name.split("-")[-1].split(".")[0]))
    return [path for path in [directory / f"{stage}.jsonl", *others] if path.is_file()]


def split_torn_tail(data: bytes) -> tuple[bytes, bytes]:
    """(the complete lines, a torn last line without its newline, or b"")."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def read_lines(path: Path) -> list[dict]:
    """The records of one JSONL file; a torn last line is left out (`repair` removes it from disk)."""
    complete, _ = split_torn_tail(path.read_bytes())
    records = []
    for number, line in enumerate(complete.decode("utf-8", errors="replace").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise MosaError(
                f"{path}:{number} is not a JSON record ({line[:60]!r}); mosa eval never writes such a line: "
                "remove it, or start a new run directory"
            ) from None
    return records


def read_stage(directory: Path, stage: str) -> list[dict]:
    return [record for path in stage_files(directory, stage) for record in read_lines(path)]


def append_lines(path: Path, records: list[dict]) -> None:
    """One write for the whole batch, flushed and fsynced: on return the batch is on disk."""
    if not records:
        return
    data = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def repair(directory: Path) -> list[str]:
    """Cut the torn last line off every stage file; returns what was cut, for the log."""
    cut = []
    for stage in STAGES:
        for path in stage_files(directory, stage):
            complete, torn = split_torn_tail(path.read_bytes())
            if torn:
                os.truncate(path, len(complete))
                cut.append(f"{path.name}: dropped a torn last line of {len(torn)} bytes (cut off by a kill); it is done again")
    return cut


def lock(directory: Path, command: str = "mosa eval"):
    """Hold the run directory for this process (released when it exits, even by SIGKILL), so that two
    runs of `command` never append to the same files. Returns the open lock file; keep it alive."""
    handle = open(directory / LOCK_FILE, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise MosaError(f"another {command} is writing {directory}; wait for it to finish, or use another --output") from None
    return handle


def check_config(directory: Path, config: dict) -> None:
    """Write the config into a new run directory; refuse a different one for an existing run."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        write_atomically(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return
    changed = differences(json.loads(path.read_text()), config)
    if changed:
        raise MosaError(
            f"{directory} holds a run with another config ({'; '.join(changed)}); use a new --output directory, "
            f"or restore those settings (the run's own are in {path})"
        )


def read_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise MosaError(
            f"{directory} is not a run directory (no {CONFIG_FILE}); run `mosa eval --config ... --output {directory}`"
        )
    return json.loads(path.read_text())
