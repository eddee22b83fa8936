"""Masked-diffusion sampling: the exact LLaDA sampler, its remasking rules, and the summary of the
order in which it decoded (mosa.sampling.order)."""

from mosa.sampling.fast import decoding_label
from mosa.sampling.order import response_order, summarise_order
from mosa.sampling.remasking import REMASKING_RULES, register_remasking
from mosa.sampling.sampler import GenerationOutput, SamplerConfig, aligned_logits, generate

__all__ = [
    "GenerationOutput",
    "REMASKING_RULES",
    "SamplerConfig",
    "aligned_logits",
    "decoding_label",
    "generate",
    "register_remasking",
    "response_order",
    "summarise_order",
]
