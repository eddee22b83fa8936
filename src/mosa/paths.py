"""Where mosa keeps what it builds and downloads: $MOSA_CACHE_DIR, by default ~/.cache/mosa."""

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("MOSA_CACHE_DIR") or Path.home() / ".cache" / "mosa")
