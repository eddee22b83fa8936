"""Where mosa keeps what it builds and downloads ($MOSA_CACHE_DIR, by default ~/.cache/mosa), how
it writes files that a kill must never leave half-written, and the checks that an output path can be
written, made before any work so that a bad path never costs a run."""

import os
import tempfile
from pathlib import Path

from mosa.errors import MosaError


def cache_dir() -> Path:
    return Path(os.environ.get("MOSA_CACHE_DIR") or Path.home() / ".cache" / "mosa")


def write_atomically(target: Path, data: str | bytes) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    try:
        with handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def check_output_dir(path: str | Path, what: str = "--output") -> None:
    """Refuse, in one line, a directory that cannot be created or written: an existing path that is
    not a directory, or one whose nearest existing parent is not a writable directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MosaError(f"{what} {path} is a file; give a directory (it is created if missing)")
    _check_writable(path, what)


def check_output_file(path: str | Path, example: str, what: str = "--output") -> None:
    """Refuse, in one line, a file that cannot be written: an existing directory, a read-only file,
    or a place whose nearest existing parent is not a writable directory. `example`: a file name
    the message suggests inside a directory given by mistake."""
    path = Path(path)
    if path.is_dir():
        raise MosaError(f"{what} {path} is a directory; give a file path, e.g. {path / example}")
    if path.exists() and not os.access(path, os.W_OK):
        raise MosaError(f"{what} {path} is read-only; choose another file")
    _check_writable(path.parent, what, named=path)


def _check_writable(directory: Path, what: str, named: Path | None = None) -> None:
    """The nearest existing one of `directory` and its parents must be a directory we can write in:
    a test file is made there, which no permission bits can fool (root, read-only mounts, /proc)."""
    named = named or directory
    existing = next(place for place in (directory, *directory.parents) if place.exists())
    if not existing.is_dir():
        raise MosaError(f"{what} {named}: {existing} is a file, so nothing can be made under it; choose another path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise MosaError(f"{what} {named}: cannot write in {existing} ({error.strerror}); choose a writable place") from None
