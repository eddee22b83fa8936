"""Masked-diffusion sampling: the exact LLaDA sampler, its remasking rules, its training-free
defences (mosa.sampling.defences), and the summary of the order in which it decoded (mosa.sampling.order)."""

from mosa.sampling.defences import DEFENCES, defences_in_full, defences_label, register_defence
from mosa.sampling.fast import decoding_label
from mosa.sampling.order import response_order, summarise_order
from mosa.sampling.remasking import REMASKING_RULES, register_remasking
from mosa.sampling.sampler import GenerationOutput, SamplerConfig, aligned_logits, generate

__all__ = [
    "DEFENCES",
    "GenerationOutput",
    "REMASKING_RULES",
    "SamplerConfig",
    "aligned_logits",
    "decoding_label",
    "defences_in_full",
    "defences_label",
    "generate",
    "register_defence",
    "register_remasking",
    "response_order",
    "summarise_order",
]
