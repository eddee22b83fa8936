"""The sampler's defences through `mosa serve`: the server's own on every request, a request's added,
answers equal to in-process sampling with the same defences, plain and streamed, bad defences refused
in one line, and which requests share a canvas batch."""

import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from mosa.cli import main
from mosa.serve.app import ServeSettings, request_config
from mosa.serve.engine import Engine, Job
from mosa.serve.protocol import ChatCompletionRequest
from tests.serve.conftest import SAMPLER, running
from tests.serve.test_client import PROMPTS, decoding, in_process

# On the tiny model this monitor ends most PROMPTS' responses part-way (at steps 4 to 13) and leaves
# "why is red blue" whole: both outcomes are checked.
MONITOR = {"name": "eos-monitor", "threshold": 0.03, "reduce": "mean"}
ANNEALED = {"name": "annealed-remasking", "alpha0": 0.3}


@pytest.fixture(scope="module")
def defended(tiny):
    """The tiny model served with the EOS monitor on every request."""
    from openai import OpenAI

    with running(tiny, sampler={**SAMPLER, "defences": [{"name": "eos-monitor", "threshold": 0.03}]}, batch_wait=0.05) as (
        url,
        app,
    ):
        yield OpenAI(base_url=url, api_key="unused", max_retries=0), app


def chat(client, prompt, **extra_body):
    return client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": prompt}], extra_body={"return_order": True, **extra_body}
    )


def special_ids(lm):
    return (lm.eos_id, lm.eot_id, lm.pad_id, lm.mask_id)


def finish_reason(lm, expected):
    """A response a defence ended is a refusal by a safety filter, in OpenAI's words; others as ever."""
    if expected.defence_events:
        return "content_filter"
    return "stop" if any(token in (lm.eos_id, lm.eot_id) for token in expected.response_ids) else "length"


def same_events(served, expected):
    """The same defences fired at the same steps; their scores agree to float precision (a batch's
    composition moves the last digit of a mean)."""
    assert served.keys() == expected.keys()
    return all(
        served[name]["step"] == event["step"] and served[name]["score"] == pytest.approx(event["score"], abs=1e-5)
        for name, event in expected.items()
    )


def test_the_card_names_the_server_defences(defended):
    client, _ = defended
    card = client.models.retrieve("tiny")
    assert card.model_extra["defences"] == [MONITOR]  # every option in force
    assert card.model_extra["sampler"]["defences"] == [MONITOR]


@pytest.mark.parametrize(
    "defences", [None, [MONITOR, ANNEALED], ["annealed-remasking", {"name": "eos-monitor", "threshold": 0.03}]]
)
def test_defended_answers_equal_in_process_sampling(defended, tiny, defences):
    """Every prompt at once (batched), with the server's defence alone or with one a request adds
    (in either order, spelt in short or in full): each answer is the prompt sampled in process with
    the same defences, what they did included, and a response the monitor ended says content_filter."""
    client, _ = defended
    extra = {} if defences is None else {"defences": defences}
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        # annealed-remasking draws noise, keyed by the request's prompt_id: fixed here, so that the
        # monitor's outcome below does not depend on a fresh draw
        replies = list(pool.map(lambda prompt: chat(client, prompt, prompt_id=prompt, **extra), PROMPTS))
    ended = 0
    for prompt, reply in zip(PROMPTS, replies):
        assert reply.model_extra["prompt_id"] == prompt
        expected = in_process(tiny, prompt, defences=defences or [MONITOR], prompt_id=prompt)
        choice = reply.choices[0]
        assert choice.message.content == expected.text
        assert decoding(choice)["response_ids"] == expected.response_ids
        assert decoding(choice)["commit_step"] == expected.commit_step
        assert same_events(decoding(choice)["defence_events"], expected.defence_events)
        assert choice.finish_reason == finish_reason(tiny, expected)
        ended += bool(expected.defence_events)
    assert 0 < ended < len(PROMPTS)  # the monitor ended some responses and not others


def test_a_request_cannot_drop_or_weaken_the_server_defences(defended):
    client, app = defended
    for defences, named in (
        ([], "eos-monitor(threshold=0.03, reduce=mean)"),
        (["annealed-remasking"], "eos-monitor(threshold=0.03, reduce=mean)"),
        ([{"name": "eos-monitor", "threshold": 0.9}], "eos-monitor(threshold=0.03, reduce=mean)"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            chat(client, "hello", defences=defences)
        error = refused.value.body
        assert named in error["message"] and "not remove or change" in error["message"]
        assert error["type"] == "invalid_request_error" and error["param"] == "defences"
        assert chat(client, "hello").choices[0].message is not None  # the server goes on
    assert app.state.slots.taken == 0


def test_a_stream_the_monitor_ends_closes_cleanly(defended, tiny):
    client, _ = defended
    for prompt in ("how are you", "why is red blue"):  # ended part-way, and not ended
        expected = in_process(tiny, prompt, defences=[MONITOR])
        chunks = list(
            client.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        reasons = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
        assert text == expected.text
        assert reasons == [finish_reason(tiny, expected)]
        assert chunks[-1].usage.completion_tokens == sum(token not in special_ids(tiny) for token in expected.response_ids)


def test_bad_defences_are_refused_in_one_line_and_the_server_goes_on(served):
    """On a server without defences a request names its own; bad ones get a 400 naming the problem."""
    from openai import OpenAI

    client = OpenAI(base_url=served[0], api_key="unused", max_retries=0)
    for defences, message in (
        (["eos-guard"], "unknown defence 'eos-guard'; available: annealed-remasking, eos-monitor"),
        ([{"name": "eos-monitor", "threshold": 2}], "threshold=2 must be a probability in [0, 1)"),
        ([{"name": "eos-monitor", "limit": 0.5}], "unknown options limit; known: threshold, reduce"),
        (["eos-monitor", "eos-monitor"], "given twice"),
        ("eos-monitor", "Input should be a valid list"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            chat(client, "hello", defences=defences)
        assert message in refused.value.body["message"] and refused.value.body["param"] == "defences"
        assert chat(client, "hello").choices[0].message is not None
    # A defence that cannot run under the request's settings: the sampler's own check, as a 400.
    with pytest.raises(openai.BadRequestError, match="annealed-remasking anneals over a block's steps"):
        chat(client, "hello", defences=["annealed-remasking"], decoding="threshold", threshold=0.9)
    # Without server defences, a request turns them on and off as it likes.
    assert decoding(chat(client, "how are you", defences=[MONITOR]).choices[0])["defence_events"]
    assert decoding(chat(client, "how are you", defences=[]).choices[0])["defence_events"] == {}


def test_only_requests_with_equal_defences_share_a_canvas_batch(tiny):
    """Requests waiting together: those whose defences are equal, however spelt, share one batch; the
    others each get their own."""
    settings = ServeSettings(model_name="tiny", sampler=SAMPLER)
    spellings = [
        None,
        ["eos-monitor"],
        [{"name": "eos-monitor", "threshold": 0.5}],
        [MONITOR],
        [ANNEALED, MONITOR],
        [MONITOR, ANNEALED],
    ]
    configs = [
        request_config(
            tiny,
            ChatCompletionRequest(model="tiny", messages=[{"role": "user", "content": "hello"}], defences=spelt),
            settings,
            [],
        )
        for spelt in spellings
    ]
    finished = threading.Semaphore(0)
    engine = Engine(tiny)
    prompt = tiny.render_chat("hello")
    engine.submit([Job(config, prompt, {}, "", False, lambda event: finished.release()) for config in configs])
    engine.start()
    try:
        for _ in configs:
            assert finished.acquire(timeout=60)
    finally:
        engine.close()
    # none | eos-monitor at its defaults (two spellings) | at 0.03 | annealed then monitor | monitor then annealed
    assert engine.batches == 5 and engine.largest_batch == 2


@pytest.mark.parametrize(
    "defence, message",
    [
        ("eos-guard", "unknown defence 'eos-guard'; available: annealed-remasking, eos-monitor"),
        ("eos-monitor:threshold=2", "threshold=2 must be a probability in [0, 1)"),
        ("eos-monitor:threshold", "must look like NAME or NAME:OPTION=VALUE"),
    ],
)
def test_the_cli_refuses_a_bad_defence_before_loading(capsys, tmp_path, defence, message):
    assert main(["serve", "--model", str(tmp_path / "absent"), "--defence", defence]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mosa: error:") and message in error and error.count("\n") == 1
