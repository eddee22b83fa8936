"""The official `openai` client against `mosa serve` on 127.0.0.1: answers, streams, concurrency, and
answers equal to in-process sampling (what `mosa eval`'s Target gives for the same case)."""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from mosa.attacks.base import Target, TestCase
from mosa.backends import OpenAIChat, RequestRejected
from mosa.errors import MosaError
from mosa.sampling import generate
from tests.serve.conftest import SAMPLER

PROMPTS = ["how are you", "what is the cat", "the dog sat on the mat and ran fast", "hello", "why is red blue", "one two three"]


def in_process(lm, prompt, *, prefill=None, prompt_id="", **settings):
    """What mosa eval's target answers for the same case: Target.respond, the eval's own sampling."""
    target = Target(lm, lm.sampler_config(**{**SAMPLER, **settings}))
    case = TestCase(prompt_id=prompt_id, behaviour=prompt, messages=[{"role": "user", "content": prompt}], prefill=prefill or {})
    return target.respond([case])[0]


def decoding(choice):
    return choice.model_extra["decoding"]


def test_models(client):
    assert [model.id for model in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").owned_by == "mosa"


def test_chat_equals_in_process_sampling(client, tiny):
    for prompt in PROMPTS[:3]:
        reply = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": prompt}], extra_body={"return_order": True}
        )
        expected = in_process(tiny, prompt)
        choice = reply.choices[0]
        assert choice.message.content == expected.text
        assert decoding(choice)["response_ids"] == expected.response_ids
        assert decoding(choice)["commit_step"] == expected.commit_step
        ended = any(token in (tiny.eos_id, tiny.eot_id) for token in expected.response_ids)
        assert choice.finish_reason == ("stop" if ended else "length")
        assert reply.usage.prompt_tokens == len(tiny.render_chat(prompt))
        assert reply.usage.completion_tokens == sum(
            token not in (tiny.eos_id, tiny.eot_id, tiny.pad_id, tiny.mask_id) for token in expected.response_ids
        )


def test_sampled_answers_follow_seed_and_prompt_id(client, tiny):
    """At temperature > 0 the noise is keyed by (seed, prompt_id, prompt), as in mosa eval."""

    def ask(seed, prompt_id):
        reply = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "how are you"}],
            temperature=1.0,
            seed=seed,
            extra_body={"prompt_id": prompt_id, "return_order": True},
        )
        return decoding(reply.choices[0])["response_ids"]

    assert ask(3, "advbench/1") == in_process(tiny, "how are you", temperature=1.0, seed=3, prompt_id="advbench/1").response_ids
    assert ask(3, "advbench/1") == ask(3, "advbench/1")
    assert len({tuple(ask(seed, "x")) for seed in range(4)}) > 1
    # Neither seed nor prompt_id: a fresh draw each time (as OpenAI's API), reproducible from the id it returns.
    fresh = [
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "how are you"}], temperature=1.0)
        for _ in range(4)
    ]
    assert len({reply.choices[0].message.content for reply in fresh}) > 1
    prompt_id = fresh[0].model_extra["prompt_id"]
    assert fresh[0].choices[0].message.content == in_process(tiny, "how are you", temperature=1.0, prompt_id=prompt_id).text


def test_prefill_and_sampler_extensions(client, tiny):
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "what is the cat"}],
        extra_body={"prefill": {"3": "sure here is"}, "gen_length": 24, "steps": 12, "block_length": 8, "return_order": True},
    )
    expected = in_process(tiny, "what is the cat", prefill={3: "sure here is"}, gen_length=24, steps=12, block_length=8)
    assert reply.choices[0].message.content == expected.text
    steps = decoding(reply.choices[0])["commit_step"]
    assert steps == expected.commit_step and steps[3:6] == [-1, -1, -1] and len(steps) == 24
    assert decoding(reply.choices[0])["order"]["attack_written"] == 3


def test_a_fast_decoding_is_a_request_extension_and_answers_as_in_process(client, tiny):
    settings = {"decoding": "dual-cache", "threshold": 0.5, "gen_length": 24, "steps": 24, "block_length": 8}
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "what is the cat"}], extra_body={**settings, "return_order": True}
    )
    expected = in_process(tiny, "what is the cat", **settings)
    assert reply.choices[0].message.content == expected.text
    assert decoding(reply.choices[0])["commit_step"] == expected.commit_step


def test_completions_endpoint_samples_the_raw_prompt(client, tiny):
    reply = client.completions.create(model="tiny", prompt="the cat sat on", extra_body={"return_order": True})
    ids = tiny.tokenizer("the cat sat on", return_tensors="pt")["input_ids"]
    expected = generate(tiny.module, ids, config=tiny.sampler_config(**SAMPLER), prompt_ids=[""]).response[0]
    assert decoding(reply.choices[0])["response_ids"] == expected.tolist()
    assert reply.choices[0].text == tiny.decode_response(expected)


def test_stream_adds_up_to_the_answer(client, tiny):
    for prompt in PROMPTS[:3]:
        plain = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}])
        chunks = list(
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": prompt}], stream=True, stream_options={"include_usage": True}
            )
        )
        pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
        assert "".join(pieces) == plain.choices[0].message.content
        assert sum(bool(piece) for piece in pieces) > 1  # the text arrives as the prefix grows, not at the end
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == plain.choices[0].finish_reason
        assert chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_completions_stream(client):
    plain = client.completions.create(model="tiny", prompt="the dog ran")
    streamed = "".join(
        chunk.choices[0].text for chunk in client.completions.create(model="tiny", prompt="the dog ran", stream=True)
    )
    assert streamed == plain.choices[0].text


def test_stop_sequence_and_max_tokens(client, tiny):
    messages = [{"role": "user", "content": "how are you"}]
    full = client.chat.completions.create(model="tiny", messages=messages, extra_body={"return_order": True})
    words = full.choices[0].message.content.split()
    assert len(words) >= 4, "the tiny model's answer is too short for this test"
    stop = " " + words[2]
    cut = full.choices[0].message.content.split(stop)[0]
    stopped = client.chat.completions.create(model="tiny", messages=messages, stop=[stop])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (cut, "stop")
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model="tiny", messages=messages, stop=stop, stream=True)
    )
    assert streamed == cut

    capped = client.chat.completions.create(model="tiny", messages=messages, max_tokens=3)
    first_three = decoding(full.choices[0])["response_ids"][:3]
    assert capped.choices[0].message.content == tiny.tokenizer.decode(first_three, skip_special_tokens=True).strip()
    assert capped.usage.completion_tokens <= 3


def test_n_choices_are_samples_of_their_own(client, tiny):
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], n=3, temperature=1.0, extra_body={"prompt_id": "p"}
    )
    texts = [choice.message.content for choice in reply.choices]
    assert [choice.index for choice in reply.choices] == [0, 1, 2]
    assert texts[0] == in_process(tiny, "hello", temperature=1.0, prompt_id="p").text
    assert texts[1] == in_process(tiny, "hello", temperature=1.0, prompt_id="p #2").text
    assert len(set(texts)) > 1


def test_concurrent_requests_are_batched_and_answer_as_alone(served, client, tiny):
    """Prompts of different lengths and settings sent at once: batched, and each answer is the one it
    gets alone in process (its noise follows its own seed, id and prompt)."""
    app = served[1]
    cases = [(prompt, temperature) for prompt in PROMPTS for temperature in (0.0, 1.0)]

    def ask(case):
        prompt, temperature = case
        reply = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": prompt}], temperature=temperature, seed=0
        )
        return reply.choices[0].message.content

    batches_before = app.state.engine.batches
    with ThreadPoolExecutor(len(cases)) as pool:
        answers = list(pool.map(ask, cases))
    assert answers == [in_process(tiny, prompt, temperature=temperature).text for prompt, temperature in cases]
    assert app.state.engine.largest_batch > 1
    assert app.state.engine.batches - batches_before < len(cases)
    assert app.state.slots.taken == 0


def test_mosa_backend_reads_the_served_model(served, tiny):
    """mosa's own OpenAI backend (judges' and attackers' endpoint in mosa eval) gets the same text."""
    from mosa.backends.openai import OpenAIChat

    backend = OpenAIChat("tiny", served[0], cache=False, retries=0)
    answer = backend.chat([{"role": "user", "content": "why is red blue"}], max_tokens=16)
    assert answer == in_process(tiny, "why is red blue").text


def test_model_card_sampler_and_tokenize(served, tiny):
    """The extensions mosa eval's served target reads: the sampler defaults with the model's special
    ids on the model card, and a text's token ids (POST /v1/tokenize, vLLM's shape)."""
    backend = OpenAIChat("tiny", served[0], cache=False, retries=0)
    sampler = backend.request("models/tiny")["sampler"]
    assert sampler == dataclasses.asdict(tiny.sampler_config(**SAMPLER))
    text = "sure here is step one"
    answer = backend.request("tokenize", {"model": "tiny", "prompt": text, "add_special_tokens": False})
    assert answer == {"tokens": tiny.tokenizer(text, add_special_tokens=False)["input_ids"], "count": 5}
    with pytest.raises(MosaError, match="answered HTTP 404"):
        backend.request("tokenize", {"model": "other", "prompt": text})
    with pytest.raises(RequestRejected, match="HTTP 400.*prompt: Field required"):
        backend.request("tokenize", {"model": "tiny", "messages": [{"role": "user", "content": text}]})
