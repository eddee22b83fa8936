"""What a run is made of: content fingerprints of checkpoints and adapters, and the check that a
resumed run is made of the same inputs.

    fingerprint_model("GSAI-ML/LLaDA-8B-Instruct")   # the cached hub snapshot's files
    fingerprint_directory("runs/mosa/adapter")
    check_inputs(run_dir, {"model": ..., "prompts": ...}, fix="use a new --output directory")

A fingerprint is the sha256 of every file of the checkpoint directory (hidden files aside), each
hashed in full. Hashing is honest but costs seconds per GB, so a file's hash is kept in
$MOSA_CACHE_DIR/fingerprints.json under its real path, size, inode, mtime and ctime, and reused
while all of them are unchanged: any write to a file moves its ctime, which no user tool can set
back, so a reused hash never hides a change (a file changed less than a second before it was
hashed is not trusted to the cache: timestamps have a coarse tick). A checkpoint is hashed in full
once, then fingerprinted in milliseconds (docs/align.md gives the measured cost).

A hub id is fingerprinted through its snapshot in the local Hugging Face cache; one that is not
there yet is recorded by name only (`"content": false`), and the record says so. A run that starts
that way takes the content fingerprint as soon as the snapshot exists (after the model is loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from mosa.errors import MosaError
from mosa.paths import cache_dir, write_atomically
from mosa.profiles import find_profile

CHUNK = 1 << 24  # 16 MiB reads
RACY_NS = 1_000_000_000  # files changed less than a second before hashing are hashed again next time
INPUTS_FILE = "inputs.json"


def hash_cache_file() -> Path:
    return cache_dir() / "fingerprints.json"


def file_sha256(path: Path, cache: dict) -> str:
    """sha256 of a file's content, reused from `cache` while its size, inode, mtime and ctime hold."""
    real = os.path.realpath(path)
    started = time.time_ns()
    stat = os.stat(real)
    key = [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]
    known = cache.get(real)
    if known is not None and known["stat"] == key:
        return known["sha256"]
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    # A file written within a timestamp tick of its hashing could be written again with the same
    # times (git's "racy clean" problem): such a hash is not kept.
    if started - max(stat.st_mtime_ns, stat.st_ctime_ns) > RACY_NS:
        cache[real] = {"stat": key, "sha256": digest.hexdigest()}
    return digest.hexdigest()


def fingerprint_directory(path: str | Path, *, name: str | None = None, kind: str = "directory") -> dict:
    """The content fingerprint of every non-hidden file under `path` (sizes and full sha256s)."""
    root = Path(path)
    if not root.is_dir():
        raise MosaError(f"{root} is not a directory; cannot fingerprint it")
    cache_path = hash_cache_file()
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except ValueError:  # a damaged cache only costs hashing again
        cache = {}
    before = dict(cache)
    files = {}
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file():
            continue
        files[relative.as_posix()] = {"size": file.stat().st_size, "sha256": file_sha256(file, cache)}
    if not files:
        raise MosaError(f"{root} holds no files; cannot fingerprint it")
    if cache != before:  # files that are gone leave the cache, so it holds only what exists
        kept = {real: entry for real, entry in cache.items() if os.path.exists(real)}
        write_atomically(cache_path, json.dumps(kept, indent=0, sort_keys=True))
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {
        "name": name or str(path),
        "kind": kind,
        "content": True,
        "path": str(root.resolve()),
        "digest": digest,
        "files": files,
    }


def fingerprint_model(model: str | Path) -> dict:
    """A checkpoint directory, a name a plug-in gives a checkpoint it ships ("organism"), or a hub id
    (its snapshot in the Hugging Face cache; the name alone when it is not cached)."""
    model = str(model)
    profile = find_profile(model)
    if profile is not None and profile.checkpoint(model) != Path(model):  # a name, not the directory itself
        return fingerprint_directory(profile.checkpoint(model), name=model, kind=profile.name)
    if Path(model).is_dir():
        return fingerprint_directory(model)
    snapshot = hub_snapshot(model)
    if snapshot is not None:
        return fingerprint_directory(snapshot, name=model, kind=f"hub snapshot {snapshot.name}")
    return {
        "name": model,
        "kind": "hub id not in the local Hugging Face cache: only its name is fingerprinted",
        "content": False,
        "digest": hashlib.sha256(model.encode()).hexdigest(),
    }


def hub_snapshot(model_id: str) -> Path | None:
    """The folder of a hub id's cached snapshot (the revision `main` points to), or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        return None


def check_inputs(directory: Path, inputs: dict, *, fix: str) -> None:
    """Write `inputs` (JSON) into a new run directory; for an existing run, refuse other inputs in
    one line naming them. A fingerprint recorded by name only is replaced by a content one."""
    path = Path(directory) / INPUTS_FILE
    if not path.is_file():
        write_inputs(directory, inputs)
        return
    stored = json.loads(path.read_text())
    changed = changes(stored, inputs)
    if changed:
        raise MosaError(f"{directory} was run on other inputs ({'; '.join(changed)}); {fix} (the run's own inputs are in {path})")
    if stored != inputs:  # only name-only fingerprints differ: keep the content ones
        write_inputs(directory, inputs)


def write_inputs(directory: str | Path, inputs: dict) -> None:
    write_atomically(Path(directory) / INPUTS_FILE, json.dumps(inputs, indent=1, ensure_ascii=False) + "\n")


def changes(stored, given, where: str = "") -> list[str]:
    """What differs between two inputs records, as 'key: what changed'. Fingerprints and prompt-set
    records (both carry a digest) are compared by digest; other mappings key by key."""
    if stored == given:
        return []
    prefix = f"{where}: " if where else ""
    if not (isinstance(stored, dict) and isinstance(given, dict)):
        return [f"{prefix}changed"]
    if "digest" not in stored or "digest" not in given:
        return [
            change
            for key in sorted(set(stored) | set(given))
            for change in changes(stored.get(key), given.get(key), f"{where}.{key}" if where else key)
        ]
    if stored["digest"] == given["digest"]:
        return []
    if "kind" not in stored:  # a prompt set
        return [
            f"{prefix}{stored.get('count')} prompts (digest {stored['digest'][:12]}) -> {given.get('count')} "
            f"(digest {given['digest'][:12]})"
        ]
    if stored["content"] and given["content"]:
        files = sorted(
            name for name in set(stored["files"]) | set(given["files"]) if stored["files"].get(name) != given["files"].get(name)
        )
        shown = ", ".join(files[:4]) + (", ..." if len(files) > 4 else "")
        return [f"{prefix}the content of {given['name']} changed ({shown})"]
    if stored["name"] != given["name"]:
        return [f"{prefix}{stored['name']} -> {given['name']}"]
    if stored["content"]:
        return [
            f"{prefix}{given['name']} is no longer in the local Hugging Face cache, so its content cannot be compared; "
            "download it again"
        ]
    return []  # recorded by name only: there is no content to compare with


def read_inputs(directory: str | Path) -> dict | None:
    """A run's or an adapter's recorded inputs, or None when it has none."""
    path = Path(directory) / INPUTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
