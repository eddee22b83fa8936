"""Where mosa keeps what it builds and downloads ($MOSA_CACHE_DIR, by default ~/.cache/mosa), and
how it writes files that a kill must never leave half-written."""

import os
import tempfile
from pathlib import Path


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
