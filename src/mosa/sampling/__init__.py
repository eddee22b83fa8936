"""Masked-diffusion sampling: the exact LLaDA sampler and its remasking rules."""

from mosa.sampling.remasking import REMASKING_RULES, register_remasking
from mosa.sampling.sampler import GenerationOutput, SamplerConfig, aligned_logits, generate

__all__ = ["GenerationOutput", "REMASKING_RULES", "SamplerConfig", "aligned_logits", "generate", "register_remasking"]
