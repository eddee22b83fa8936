"""Masked-diffusion language models behind one interface (`DiffusionLM`), and their loaders."""

from mosa.models.diffusion_lm import FAMILIES, DiffusionLM, detect_family, load_model, merge_adapter, wrap_model
from mosa.models.wrappers import BidirectionalLM, DreamLM

__all__ = ["FAMILIES", "BidirectionalLM", "DiffusionLM", "DreamLM", "detect_family", "load_model", "merge_adapter", "wrap_model"]
