"""mosa: safety toolkit for diffusion language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mosa-dllm")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
