"""GCG on a dLLM: the loss it records is the masked NLL of the target phrase, it falls, and it is
reproducible; it runs on unshifted and shifted (Dream) logits alike."""

import pytest
import torch
import torch.nn.functional as F

from mosa.attacks import Target, make_attack
from mosa.attacks.gcg import allowed_tokens
from mosa.data import Example
from mosa.errors import MosaError
from mosa.models import load_model
from tests.attacks.conftest import BEHAVIOURS, make_target
from tests.models.test_families import dream_tokenizer, remote_checkpoint

QUICK = dict(suffix_length=4, iterations=6, top_k=8, candidates=16, init="the")


def masked_nll(lm, messages, phrase_ids, position, gen_length):
    """The loss written out independently: -mean log p(phrase_j at response position k + j) with the
    whole response masked, from one forward pass on [chat ; gen_length masks]."""
    prompt = lm.render_chat(messages)
    canvas = torch.tensor([prompt + [lm.mask_id] * gen_length])
    with torch.no_grad():
        log_probs = F.log_softmax(lm.logits(canvas)[0].float(), dim=-1)
    rows = [len(prompt) + position + j for j in range(len(phrase_ids))]
    return -log_probs[rows, phrase_ids].mean().item()


@pytest.fixture(scope="module")
def runs(lm):
    """GCG aimed at position 0 and at position 5 of a 24-token response."""
    target = make_target(lm)
    return {
        position: (
            target,
            make_attack("gcg", {**QUICK, "target": "sure here is", "position": position}).cases(BEHAVIOURS, target),
        )
        for position in (0, 5)
    }


@pytest.mark.parametrize("position", [0, 5])
def test_the_recorded_loss_is_the_masked_nll_of_the_final_prompt(runs, position):
    target, cases = runs[position]
    for case in cases:
        payload = case.payload
        assert case.messages == [{"role": "user", "content": f"{case.behaviour} {payload['suffix']}"}]
        phrase_ids = target.tokens("sure here is")
        expected = masked_nll(target.lm, case.messages, phrase_ids, position, target.sampler.gen_length)
        assert payload["loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        # The prompt the target is given holds exactly the optimised ids, before the turn closes.
        rendered = target.lm.render_chat(case.messages)
        assert rendered[-len(payload["suffix_ids"]) - 2 : -2] == payload["suffix_ids"]


@pytest.mark.parametrize("position", [0, 5])
def test_the_loss_never_rises_and_falls_over_a_few_iterations(runs, position):
    for case in runs[position][1]:
        trajectory = case.payload["loss_trajectory"]
        assert len(trajectory) == QUICK["iterations"] + 1 and trajectory[-1] == case.payload["loss"]
        assert all(later <= earlier for earlier, later in zip(trajectory, trajectory[1:]))
        assert trajectory[-1] < trajectory[0] - 0.05


def test_the_suffix_uses_allowed_tokens_only(runs, lm):
    allowed = allowed_tokens(lm, lm.module.get_input_embeddings().weight.shape[0], allow_non_ascii=False)
    special = lm.tokenizer.all_special_ids
    assert not allowed[special].any() and allowed[lm.tokenizer.convert_tokens_to_ids("cat")]
    for _, cases in runs.values():
        assert all(allowed[token] for case in cases for token in case.payload["suffix_ids"])


def test_gcg_is_reproducible_and_seeded_per_behaviour(runs, lm):
    target, cases = runs[0]
    options = {**QUICK, "target": "sure here is"}
    again = make_attack("gcg", options).cases(BEHAVIOURS[::-1], target)[::-1]  # the other order
    assert [case.payload for case in again] == [case.payload for case in cases]
    reseeded = make_attack("gcg", {**options, "seed": 1}).cases(BEHAVIOURS, target)
    assert [case.payload["suffix_ids"] for case in reseeded] != [case.payload["suffix_ids"] for case in cases]


def test_gcg_defaults_to_the_benchmark_target(lm):
    cases = make_attack("gcg", {**QUICK, "iterations": 0}).cases(BEHAVIOURS, make_target(lm))
    assert [case.payload["target"] for case in cases] == ["Sure, here is how to do it.", "sure here is the cat"]
    assert [len(case.payload["loss_trajectory"]) for case in cases] == [1, 1]


def test_gcg_refuses_an_init_outside_the_vocabulary(lm):
    with pytest.raises(MosaError, match=r"attack gcg: init='!' repeated 4 times is not 4 allowed tokens"):
        make_attack("gcg", {**QUICK, "init": "!"}).cases(BEHAVIOURS, make_target(lm))


def test_shifted_logits_give_the_same_optimisation_as_their_unshifted_twin(tmp_path):
    """A Dream-style checkpoint (logits one position late, remote code, inputs_embeds through the
    Dream wrapper) and the same weights read unshifted must agree step for step."""
    tokenizer = dream_tokenizer()
    dream = load_model(remote_checkpoint(tmp_path, tokenizer, "dream", shifted=True), trust_remote_code=True, family="dream")
    twin = load_model(
        remote_checkpoint(tmp_path, tokenizer, "twin", shifted=False, mask_token_id=2), trust_remote_code=True, family="llada"
    )
    behaviours = [Example(id="h", prompt="hello world", source="test")]
    options = dict(suffix_length=3, iterations=4, top_k=4, candidates=8, init="hello", target="world user")
    payloads = []
    for lm in (dream, twin):
        target = Target(lm, lm.sampler_config(gen_length=8, steps=8, block_length=8))
        payloads.append(make_attack("gcg", options).cases(behaviours, target)[0].payload)
    assert payloads[0]["suffix_ids"] == payloads[1]["suffix_ids"]
    assert payloads[0]["loss_trajectory"] == pytest.approx(payloads[1]["loss_trajectory"], rel=1e-6)
    assert payloads[0]["loss_trajectory"][-1] < payloads[0]["loss_trajectory"][0]


def byte_level_bpe_tokenizer():
    """A small BPE tokenizer of LLaDA's kind: byte-level, words carry their leading space ("Ġ!")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mosa.models.chat_templates import LLADA_TEMPLATE

    headers = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>", *headers],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(
        ["Sure, here is how to write a story about a cat! It sat on the mat. Then we ran! ! !"] * 20, trainer
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        mask_token="<|mdm_mask|>",
        additional_special_tokens=headers,
    )
    tokenizer.chat_template = LLADA_TEMPLATE
    return tokenizer


def test_gcg_places_the_suffix_right_with_leading_space_tokens():
    from mosa.models.build import build_bidirectional_llama

    lm = build_bidirectional_llama(byte_level_bpe_tokenizer(), hidden_size=32, num_layers=1)
    target = Target(lm, lm.sampler_config(gen_length=8, steps=8, block_length=8))
    options = dict(suffix_length=3, iterations=3, top_k=8, candidates=16, target="Sure, here is")
    case = make_attack("gcg", options).cases([Example(id="s", prompt="write a story", source="test")], target)[0]
    # The suffix starts as "!" x 3, each "!" carrying its leading space as the request's text gives it.
    assert case.payload["loss_trajectory"][0] == pytest.approx(
        masked_nll(lm, [{"role": "user", "content": "write a story ! ! !"}], target.tokens("Sure, here is"), 0, 8), rel=1e-5
    )
    expected = masked_nll(lm, case.messages, target.tokens("Sure, here is"), 0, 8)
    assert case.payload["loss"] == pytest.approx(expected, rel=1e-5)
    rendered = lm.render_chat(case.messages)
    after = len(
        lm.tokenizer("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False)["input_ids"]
    )
    assert rendered[-3 - after : -after] == case.payload["suffix_ids"]
