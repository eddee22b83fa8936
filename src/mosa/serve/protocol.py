"""What `mosa serve` accepts and answers: the OpenAI request bodies, checked with pydantic, and the
error shape OpenAI's API uses.

A request field is one of three kinds:

- honoured: model, messages / prompt, max_tokens (max_completion_tokens), temperature, seed, n, stop,
  stream, stream_options.include_usage, user (ignored, as an identifier);
- the dLLM extensions, top-level fields as the `openai` client's `extra_body` sends them: sampler
  settings (gen_length, steps, block_length, remasking, decoding, threshold, cfg_scale, logits_eos_inf,
  confidence_eos_eot_inf), defences (the sampler's training-free defences, as SamplerConfig names
  them; the server's own may only be added to), prefill (response position -> text), prompt_id (what the request's noise
  is keyed by, as mosa eval's case ids) and return_order (the decoding trace in the answer);
- OpenAI settings a masked-diffusion sampler has no counterpart for (top_p, penalties, logprobs,
  tools, ...): accepted at their neutral values, which tools often send explicitly, and refused
  otherwise, so that nobody believes a setting was applied when it was not.
Any other field is refused by name: a misspelt extension ("step") must not be ignored in silence.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# OpenAI settings with no counterpart here, and the value at which they change nothing.
NEUTRAL_VALUES = {
    "top_p": (None, 1, 1.0),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None, False),
    "response_format": (None, {"type": "text"}),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
}


class APIError(Exception):
    """A request refused: answered with `status` and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class DiffusionOptions(BaseModel):
    """The dLLM extensions and the OpenAI fields both endpoints share."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # the dLLM extensions (docs/serve.md)
    gen_length: int | None = None
    steps: int | None = None
    block_length: int | None = None
    remasking: str | None = None
    cfg_scale: float | None = None
    logits_eos_inf: bool | None = None
    confidence_eos_eot_inf: bool | None = None
    decoding: str | None = None  # exact | threshold | prefix-cache | dual-cache (docs/sampler.md, Fast decoding)
    threshold: float | None = None
    # ["eos-monitor", {"name": "annealed-remasking", "alpha0": 0.3}]: SamplerConfig.defences (docs/serve.md, Defences)
    defences: list[str | dict[str, Any]] | None = None
    prefill: dict[int, str] | None = None
    prompt_id: str | None = None
    return_order: bool = False
    # OpenAI settings accepted at their neutral values only (NEUTRAL_VALUES)
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: Any = None
    top_logprobs: int | None = None
    logit_bias: dict | None = None

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, stop):
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 4 or not all(stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    @model_validator(mode="after")
    def _neutral_only(self):
        for name, neutral in NEUTRAL_VALUES.items():
            value = getattr(self, name, None)
            if value not in neutral:
                raise ValueError(f"{name}={value!r} is not supported by a masked-diffusion sampler; leave it out")
        return self

    def sampler_settings(self) -> dict:
        """The sampler settings this request sets (None: the server's default)."""
        names = (
            "gen_length",
            "steps",
            "block_length",
            "temperature",
            "remasking",
            "cfg_scale",
            "logits_eos_inf",
            "confidence_eos_eot_inf",
            "decoding",
            "threshold",
            "seed",
            "defences",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class TokenizeRequest(BaseModel):
    """POST /v1/tokenize, a mosa extension in the shape of vLLM's /tokenize (text prompts only)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str
    add_special_tokens: bool = True


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, refusal, ... carry nothing a template renders

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def as_template_message(self) -> dict[str, str]:
        """As the chat template takes it: developer messages are system messages, parts joined."""
        content = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatCompletionRequest(DiffusionOptions):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict | None = None

    @property
    def token_cap(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(DiffusionOptions):
    prompt: str | list[str]
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt):
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise ValueError(f"prompt holds {len(prompt)} prompts; send one prompt per request (n for several samples)")
            prompt = prompt[0]
        return prompt

    @property
    def token_cap(self) -> int | None:
        return self.max_tokens


DiffusionOptions.model_rebuild()
