"""The sampling engine: the streamed committed prefix, and which requests share a canvas batch."""

import threading

import torch

from mosa.sampling import generate
from mosa.serve.engine import Engine, Job, pads_exactly
from tests.conftest import tiny_llama

SETTINGS = {"gen_length": 16, "steps": 16, "block_length": 16}


def run_jobs(engine, prompts, stream=False):
    """Submit every prompt before the engine starts (so all wait together); returns each job's events."""
    events = [[] for _ in prompts]
    finished = threading.Semaphore(0)

    def sender(index):
        def send(event):
            events[index].append(event)
            if event[0] != "prefix":
                finished.release()

        return send

    config = engine.lm.sampler_config(**SETTINGS)
    engine.submit([Job(config, prompt, {}, "", stream, sender(index)) for index, prompt in enumerate(prompts)])
    engine.start()
    try:
        for _ in prompts:
            assert finished.acquire(timeout=60)
    finally:
        engine.close()
    return events


def alone(lm, prompt):
    ids = torch.tensor([prompt])
    return (
        generate(lm.module, ids, torch.ones_like(ids), config=lm.sampler_config(**SETTINGS), prompt_ids=[""]).response[0].tolist()
    )


def test_streamed_prefix_holds_only_committed_tokens(tiny):
    prompt = tiny.render_chat("the dog sat on the mat")
    events = run_jobs(Engine(tiny), [prompt], stream=True)[0]
    prefixes = [event[1] for event in events if event[0] == "prefix"]
    (done,) = [event for event in events if event[0] == "done"]
    final, commit_step = done[1], done[2]
    assert [len(prefix) for prefix in prefixes] == sorted({len(prefix) for prefix in prefixes})  # strictly growing
    assert all(prefix == final[: len(prefix)] for prefix in prefixes)  # never changed once sent
    assert all(tiny.mask_id not in prefix for prefix in prefixes)
    # The model committed out of order, so the prefix grew by jumps and fewer times than there were steps.
    assert any(later < earlier for earlier, later in zip(commit_step, commit_step[1:]))
    assert len(prefixes) < SETTINGS["steps"] and prefixes[-1] == final


def test_left_padding_is_batched_only_where_positions_ignore_it(tokenizer, tiny):
    prompts = [tiny.render_chat(text) for text in ("hello", "how are you", "why", "the cat sat on the mat")]
    lengths = [len(prompt) for prompt in prompts]
    assert len(set(lengths)) < len(lengths) < 2 * len(set(lengths))

    engine = Engine(tiny)
    assert engine.pads_exactly
    events = run_jobs(engine, prompts)
    assert engine.batches == 1
    assert [event[0][1] for event in events] == [alone(tiny, prompt) for prompt in prompts]

    llada_like = tiny_llama(tokenizer, seed=1)
    llada_like.module.positions = "absolute"  # LLaDA's positions: counted from the canvas's left edge
    engine = Engine(llada_like)
    assert not pads_exactly(llada_like)
    events = run_jobs(engine, prompts)
    assert engine.batches == len(set(lengths))  # one batch per prompt length: nothing padded
    assert engine.largest_batch == 2
    assert [event[0][1] for event in events] == [alone(llada_like, prompt) for prompt in prompts]
