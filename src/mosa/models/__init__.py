"""Masked-diffusion language models behind one interface (`DiffusionLM`), and their loaders."""

from mosa.models.diffusion_lm import (
    FAMILIES,
    DiffusionLM,
    check_adapter,
    check_prompts_before_loading,
    detect_family,
    load_model,
    load_tokenizer,
    merge_adapter,
    refuse_empty_prompts,
    wrap_model,
)
from mosa.models.wrappers import BidirectionalLM, DreamLM

__all__ = [
    "FAMILIES",
    "BidirectionalLM",
    "DiffusionLM",
    "DreamLM",
    "check_adapter",
    "check_prompts_before_loading",
    "detect_family",
    "load_model",
    "load_tokenizer",
    "merge_adapter",
    "refuse_empty_prompts",
    "wrap_model",
]
