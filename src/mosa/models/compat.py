"""Remote model code written for transformers 4, made to run on transformers 5, and checked.

LLaDA's and Dream's checkpoint code (trust_remote_code) predates transformers 5 and fails on it in
six places; each is fixed on the checkpoint's own classes, never in transformers:
  1. LLaDA never calls `post_init()`, so `all_tied_weights_keys` is missing: called after __init__.
  2. LLaDA's `tie_weights()` takes no arguments; transformers 5 passes `recompute_mapping`: ignored.
  3. LLaDA's forward reads `config.use_cache`, which transformers 5 drops: set by the loader.
  4. Dream asks for the 'default' RoPE initialiser, which transformers 5 removed: registered while
     remote code is built (`default_rope_registered`), so transformers' own models keep theirs.
  5. Dream's generation config's `validate()` refuses `user_set_attributes`: ignored.
  6. Dream's `inv_freq` buffer is left uninitialised by meta-device loading (logits off by up to
     20 on a tiny model, silently): recomputed after loading (`reset_rotary_buffers`).
`rotary_mismatch` then checks every rotary table against the config, whichever path loaded it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys

import torch
from torch import nn


def make_compatible(model_class: type) -> None:
    """Patch a remote-code model class (and its module's generation config) in place, once."""
    if model_class.__dict__.get("_mosa_compatible"):
        return

    init = model_class.__init__

    @functools.wraps(init)
    def __init__(self, config, *args, **kwargs):
        init(self, config, *args, **kwargs)
        if not hasattr(self, "all_tied_weights_keys"):
            self.post_init()

    model_class.__init__ = __init__

    tie_weights = model_class.tie_weights
    if not _takes_keywords(tie_weights):
        model_class.tie_weights = lambda self, *args, **kwargs: tie_weights(self)

    module = sys.modules.get(model_class.__module__)
    for name, value in vars(module or object).items():
        if isinstance(value, type) and name.endswith("GenerationConfig") and not _takes_keywords(value.validate):
            validate = value.validate
            value.validate = lambda self, *args, _validate=validate, **kwargs: _validate(self, *args)
    model_class._mosa_compatible = True


def _takes_keywords(function) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(function).parameters.values())


@contextlib.contextmanager
def default_rope_registered():
    """ROPE_INIT_FUNCTIONS["default"] for the duration of a remote-code load. transformers 5 reads
    that registry before its models' own default too, so it is removed again afterwards."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    added = "default" not in ROPE_INIT_FUNCTIONS
    if added:
        ROPE_INIT_FUNCTIONS["default"] = default_rope_parameters
    try:
        yield
    finally:
        if added:
            del ROPE_INIT_FUNCTIONS["default"]


def default_rope_parameters(config, device=None, **_) -> tuple[torch.Tensor, float]:
    """Plain RoPE: inverse frequencies theta^(-2i/d) for the head dimension d, and no scaling."""
    return rope_inverse_frequencies(rope_theta(config), head_dim(config), device), 1.0


def rope_inverse_frequencies(theta: float, dim: int, device=None) -> torch.Tensor:
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim
    return 1.0 / (theta**exponents)


def rope_theta(config) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def head_dim(config) -> int:
    explicit = getattr(config, "head_dim", None)
    if explicit:
        return int(explicit)
    hidden = getattr(config, "hidden_size", None) or config.d_model
    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    return hidden // heads


def reset_rotary_buffers(module: nn.Module) -> None:
    """Recompute every rotary module's `inv_freq` from its config (meta-device loading leaves
    non-persistent buffers of remote code uninitialised)."""
    for part in module.modules():
        init = getattr(part, "rope_init_fn", None)
        if init is None or not isinstance(getattr(part, "inv_freq", None), torch.Tensor):
            continue
        inv_freq, part.attention_scaling = init(part.config, part.inv_freq.device, **getattr(part, "rope_kwargs", {}))
        part.register_buffer("inv_freq", inv_freq, persistent=False)
        part.original_inv_freq = inv_freq


def rotary_mismatch(module: nn.Module) -> str | None:
    """A sentence naming the first rotary table that differs from plain RoPE with the config's
    theta and head size, or None. Scaled RoPE variants are not checked."""
    for name, part in module.named_modules():
        config = getattr(part, "config", None)
        if config is None or _rope_type(config) != "default":
            continue
        if isinstance(getattr(part, "inv_freq", None), torch.Tensor):
            expected = rope_inverse_frequencies(rope_theta(config), head_dim(config), part.inv_freq.device)
            actual = part.inv_freq.float()
        elif callable(getattr(part, "get_rotary_embedding", None)):  # LLaDA's remote code: cached sin/cos
            sin, _ = part.get_rotary_embedding(16, next(module.parameters()).device)
            frequencies = rope_inverse_frequencies(rope_theta(config), head_dim(config), sin.device)
            positions = torch.arange(16, device=sin.device, dtype=torch.float)
            angles = torch.outer(positions, frequencies)
            expected, actual = torch.cat((angles, angles), dim=-1).sin(), sin.reshape(16, -1).float()
        else:
            continue
        if actual.shape != expected.shape or not torch.allclose(actual, expected, rtol=1e-4, atol=1e-6):
            return f"rotary table {name or 'of the model'} differs from RoPE with theta {rope_theta(config):g}"
    return None


def _rope_type(config) -> str:
    parameters = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return parameters.get("rope_type", parameters.get("type", "default")) if isinstance(parameters, dict) else "default"
