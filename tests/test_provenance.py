"""Content fingerprints of checkpoints, the hash cache that makes them cheap, and the inputs check."""

import json
import os
import time

import huggingface_hub.constants
import pytest

from mosa.errors import MosaError
from mosa.provenance import RACY_NS, check_inputs, fingerprint_directory, fingerprint_model, hash_cache_file


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOSA_CACHE_DIR", str(tmp_path / "cache"))


def checkpoint(directory, weights=b"\x00" * 64):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"model_type": "llama"}')
    (directory / "model.safetensors").write_bytes(weights)
    return directory


def test_a_fingerprint_hashes_every_file_in_full(tmp_path):
    model = checkpoint(tmp_path / "model")
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("x")  # hidden: not part of the checkpoint
    first = fingerprint_directory(model)
    assert sorted(first["files"]) == ["config.json", "model.safetensors"] and first["content"]
    assert fingerprint_directory(model)["digest"] == first["digest"]
    (model / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")  # same size, one byte changed
    assert fingerprint_directory(model)["digest"] != first["digest"]


def test_a_files_hash_is_reused_until_the_file_is_written(tmp_path):
    model = checkpoint(tmp_path / "model")
    fingerprint_directory(model)
    assert not hash_cache_file().is_file()  # files written a moment ago are not trusted to the cache
    time.sleep(RACY_NS / 1e9 + 0.1)
    fingerprint_directory(model)
    cache = json.loads(hash_cache_file().read_text())
    weights = os.path.realpath(model / "model.safetensors")
    cache[weights]["sha256"] = "f" * 64  # a planted value shows whether the file is read again
    hash_cache_file().write_text(json.dumps(cache))
    assert fingerprint_directory(model)["files"]["model.safetensors"]["sha256"] == "f" * 64
    stat = os.stat(weights)
    (model / "model.safetensors").write_bytes(b"\x00" * 64)  # same bytes, even
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime: the ctime still moves
    assert fingerprint_directory(model)["files"]["model.safetensors"]["sha256"] != "f" * 64

    time.sleep(RACY_NS / 1e9 + 0.1)
    (model / "config.json").unlink()
    fingerprint_directory(model)  # rewrites the cache: the file that is gone leaves it
    assert list(json.loads(hash_cache_file().read_text())) == [weights]


def test_a_hub_id_is_fingerprinted_through_its_cached_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import: patched
    assert fingerprint_model("org/tiny-dllm") == {
        "name": "org/tiny-dllm",
        "kind": "hub id not in the local Hugging Face cache: only its name is fingerprinted",
        "content": False,
        "digest": fingerprint_model("org/tiny-dllm")["digest"],
    }
    repository = tmp_path / "hub" / "models--org--tiny-dllm"
    checkpoint(repository / "snapshots" / "abc123")
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text("abc123")
    found = fingerprint_model("org/tiny-dllm")
    assert (found["name"], found["kind"], found["content"]) == ("org/tiny-dllm", "hub snapshot abc123", True)
    assert found["digest"] == fingerprint_directory(repository / "snapshots" / "abc123")["digest"]


def test_the_organism_is_fingerprinted_by_the_shipped_build():
    from mosa.organism.build import CARD_FILE, SHIPPED_ORGANISM

    found = fingerprint_model("organism")
    assert (found["name"], found["kind"]) == ("organism", "organism") and CARD_FILE in found["files"]
    assert found["digest"] == fingerprint_directory(SHIPPED_ORGANISM)["digest"]


def test_other_inputs_are_refused_in_one_line_and_a_name_only_fingerprint_gains_its_content(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import: patched
    run = tmp_path / "run"
    run.mkdir()
    check_inputs(run, {"model": fingerprint_model("org/tiny-dllm")}, fix="start anew")  # not cached yet: by name
    snapshot = checkpoint(tmp_path / "hub" / "models--org--tiny-dllm" / "snapshots" / "abc123")
    (tmp_path / "hub" / "models--org--tiny-dllm" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny-dllm" / "refs" / "main").write_text("abc123")
    check_inputs(run, {"model": fingerprint_model("org/tiny-dllm")}, fix="start anew")  # now cached: its content is kept
    assert json.loads((run / "inputs.json").read_text())["model"]["content"] is True

    (snapshot / "model.safetensors").write_bytes(b"\x02" * 64)
    with pytest.raises(MosaError) as refused:
        check_inputs(run, {"model": fingerprint_model("org/tiny-dllm")}, fix="start anew")
    message = str(refused.value)
    assert "\n" not in message and message.startswith(
        f"{run} was run on other inputs (model: the content of org/tiny-dllm changed (model.safetensors)); start anew"
    )
    with pytest.raises(MosaError, match=r"model: org/tiny-dllm -> org/other"):
        check_inputs(run, {"model": fingerprint_model("org/other")}, fix="start anew")
