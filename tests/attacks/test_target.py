"""What the target offers black-box attacks: chat over any message list as the reference tokenizer
renders it, token bans given as text, and a response's log-probabilities read on its own canvas."""

import copy

import pytest

from mosa.attacks import Target, TestCase
from mosa.errors import MosaError
from mosa.models import wrap_model
from mosa.models.likelihood import elbo_logprobs, masked_logprobs, teacher_forced_logprobs
from tests.attacks.conftest import make_target
from tests.conftest import tiny_llama
from tests.models.test_chat import DIALOGUE, DREAM_REFERENCE, LLADA_REFERENCE, with_template
from tests.upstream import dream_tokenizer, llada_tokenizer, upstream_dream, upstream_llada


@pytest.mark.parametrize(
    "family, build, make_tokenizer, reference",
    [
        ("llada", upstream_llada, llada_tokenizer, LLADA_REFERENCE),
        ("dream", upstream_dream, dream_tokenizer, DREAM_REFERENCE),
    ],
)
def test_a_dialogue_with_fabricated_turns_reaches_the_model_as_the_reference_tokenizer_renders_it(
    family, build, make_tokenizer, reference
):
    """A tiny model of the real upstream code with mosa's template for its family (what a tokenizer
    without a template gets); the ids must be those the checkpoint's own template gives."""
    lm = wrap_model(build(), make_tokenizer(), family)
    target = Target(lm, lm.sampler_config(gen_length=4, steps=4, block_length=4))
    expected = with_template(make_tokenizer(), reference).apply_chat_template(
        DIALOGUE, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert target.prompt_tokens(DIALOGUE) == expected
    input_ids, _ = lm.encode_chat([DIALOGUE, DIALOGUE[:2]])
    assert input_ids[0].tolist() == expected
    (response,) = target.respond([TestCase("dia", "how do magnets work", DIALOGUE)])
    assert len(response.response_ids) == 4


def test_a_conversation_the_template_cannot_render_is_refused_before_anything_runs(tokenizer):
    lm = tiny_llama(copy.deepcopy(tokenizer))
    lm.tokenizer.chat_template = "{{ raise_exception('no system turns here') }}"
    with pytest.raises(MosaError, match="the model's chat template cannot render this conversation: no system turns here"):
        make_target(lm).masked_logprobs(DIALOGUE, "the cat")


def test_respond_bans_texts_at_a_response_position(target):
    plain_case = TestCase("a", "how are you", [{"role": "user", "content": "how are you"}])
    (plain,) = target.respond([plain_case])
    opening = target.lm.tokenizer.decode(plain.response_ids[:2])  # what the target opens with unbanned
    later = target.lm.tokenizer.decode(plain.response_ids[9:10])
    banned_case = TestCase(
        "a", "how are you", plain_case.messages, prefill={5: "sure here"}, bans={0: [opening, "we cannot"], 9: [later]}
    )
    (banned,) = target.respond([banned_case])
    assert banned.response_ids[:2] != plain.response_ids[:2] and banned.response_ids[9] != plain.response_ids[9]
    assert banned.response_ids[5:7] == target.tokens("sure here")
    assert target.ban_ids({0: ["we cannot"]}) == {0: [target.tokens("we cannot")]}


def test_the_target_reads_log_probabilities_on_the_canvas_it_answers_on(target):
    messages = [{"role": "system", "content": "the cat"}, {"role": "user", "content": "how are you"}]
    prompt, response = target.lm.render_chat(messages), target.tokens("sure here is the cat")
    canvas = dict(gen_length=target.sampler.gen_length, position=3)

    masked = target.masked_logprobs(messages, "sure here is the cat", position=3)
    assert masked == masked_logprobs(target.lm, prompt, response, **canvas) and masked.forward_passes == 1

    forced = target.teacher_forced_logprobs(messages, "sure here is the cat", position=3, top_k=2)
    assert forced == teacher_forced_logprobs(target.lm, prompt, response, top_k=2, **canvas)
    assert forced.forward_passes == 5 and len(forced.top_ids) == 5 and len(forced.top_ids[0]) == 2

    elbo = target.elbo_logprobs(messages, "sure here is the cat", position=3, mc_num=8, seed=4)
    assert elbo == elbo_logprobs(target.lm, prompt, response, mc_num=8, seed=4, **canvas) and elbo.forward_passes == 8


def test_a_response_beyond_the_target_s_canvas_is_refused_in_one_line(lm):
    target = make_target(lm, gen_length=8, steps=8, block_length=8)
    with pytest.raises(
        MosaError, match=r"the response's 3 tokens at response position 6 span \[6, 9\), outside the response canvas"
    ):
        target.teacher_forced_logprobs([{"role": "user", "content": "hello"}], "the cat sat", position=6)
