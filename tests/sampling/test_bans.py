"""Token bans: sequences forbidden from starting at a response position, the region decoded left to
right there (EPT's negative prefixes), checked against brute force and a hand-written loop."""

import itertools

import pytest
import torch

from mosa.errors import MosaError
from mosa.sampling import generate
from tests.conftest import left_pad, tiny_llama
from tests.sampling.test_interventions import PROMPT, config  # 16 response positions in 2 blocks of 8, 16 steps


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(tokenizer, seed=21).module


def many_prompts(count):
    """`count` distinct three-word prompts of the test vocabulary (word ids from 8)."""
    return [list(words) for words in itertools.islice(itertools.permutations(range(8, 30), 3), 0, 997 * count, 997)]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_unused_bans_change_nothing(model, tokenizer, temperature):
    cfg = config(tokenizer, temperature=temperature)
    ids, mask = left_pad([[5, 9, 12], [6, 7, 8, 9]], tokenizer.eos_token_id)
    plain = generate(model, ids, mask, config=cfg)
    for bans in ({}, [{}, {}]):
        banned = generate(model, ids, mask, config=cfg, bans=bans)
        assert torch.equal(plain.sequences, banned.sequences) and torch.equal(plain.commit_step, banned.commit_step)


def hand_decoded_region(model, prompt, cfg, position, sequences):
    """The ban's region decoded by hand: one forward pass per position, left to right, on the canvas
    [prompt ; masks]; the tokens completing a banned sequence (and the mask) get -inf; argmax."""
    canvas = prompt[0].tolist() + [cfg.mask_id] * cfg.gen_length
    committed = []
    for offset in range(max(len(sequence) for sequence in sequences)):
        column = len(prompt[0]) + position + offset
        logits = model(torch.tensor([canvas])).logits[0, column].clone()
        for sequence in sequences:
            if len(sequence) == offset + 1 and sequence[:offset] == committed:
                logits[sequence[-1]] = -torch.inf
        logits[cfg.mask_id] = -torch.inf
        canvas[column] = int(logits.argmax())
        committed.append(canvas[column])
    return committed


@torch.no_grad()
def test_a_ban_decodes_its_region_as_a_hand_written_loop_then_samples_around_it(model, tokenizer):
    cfg, position = config(tokenizer), 3
    free = hand_decoded_region(model, PROMPT, cfg, position, [[-1, -1]])  # a ban that bans nothing
    sequences = [free[:2], [free[0], 99, 98]]  # the pair the loop chose unbanned, and a 3-token one
    region = hand_decoded_region(model, PROMPT, cfg, position, sequences)
    assert region[0] == free[0] and region[1] != free[1]  # the ban bites
    out = generate(model, PROMPT, config=cfg, bans={position: sequences})
    # In block 0 the region is decoded before any step: the rest is the sampler run on it prefilled.
    prefilled = generate(model, PROMPT, config=cfg, prefill={position: region})
    assert out.response[0, position : position + 3].tolist() == region
    assert torch.equal(out.sequences, prefilled.sequences)
    assert out.commit_step[0, position : position + 3].tolist() == [0, 0, 0]


@pytest.mark.parametrize("temperature, position", [(0.0, 0), (1.0, 0), (1.0, 6), (0.0, 11)])
def test_brute_force_every_sequence_the_unbanned_sampler_formed_is_gone(model, tokenizer, temperature, position):
    """Run many prompts unbanned and ban, for every row, each pair (and each first token of every
    third row, alone) that any row formed at the position: no row forms any of them banned, though
    every row did unbanned. Position 6 puts the region across blocks 0 and 1, 11 in block 1."""
    cfg = config(tokenizer, temperature=temperature)
    prompts = many_prompts(24)
    ids, mask = left_pad(prompts, tokenizer.eos_token_id)
    prompt_ids = [f"p{row}" for row in range(len(prompts))]
    plain = generate(model, ids, mask, config=cfg, prompt_ids=prompt_ids).response
    pairs = {tuple(row[position : position + 2].tolist()) for row in plain}
    singles = {int(row[position]) for row in plain[::3]}
    sequences = [list(pair) for pair in pairs] + [[token] for token in singles]
    banned = generate(model, ids, mask, config=cfg, prompt_ids=prompt_ids, bans={position: sequences})
    for row in banned.response:
        assert tuple(row[position : position + 2].tolist()) not in pairs and int(row[position]) not in singles
    assert (banned.response[:, position : position + 2] != tokenizer.mask_token_id).all()
    first_step = (position // cfg.block_length) * (cfg.steps // (cfg.gen_length // cfg.block_length))
    assert (banned.commit_step[:, position : position + 2] == first_step).all()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_banned_row_does_not_depend_on_its_batch(model, tokenizer, temperature):
    cfg = config(tokenizer, temperature=temperature)
    prompts = [[5, 9, 12], [6, 7, 8, 9], [10, 11]]
    bans = [{2: [[8, 9], [10]]}, {}, {12: [[8]], 0: [[20, 21, 22]]}]
    ids, mask = left_pad(prompts, tokenizer.eos_token_id)
    batched = generate(model, ids, mask, config=cfg, bans=bans, prompt_ids=["a", "b", "c"])
    for row, prompt in enumerate(prompts):
        alone = generate(model, torch.tensor([prompt]), config=cfg, bans=bans[row], prompt_ids=["abc"[row]])
        assert torch.equal(batched.response[row], alone.response[0])
        assert torch.equal(batched.commit_step[row], alone.commit_step[0])


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(bans={16: [[8]]}), r"ban at response position 16: it must be an integer in \[0, 16\)"),
        (dict(bans={"2": [[8]]}), r"ban at response position '2': it must be an integer"),
        (dict(bans={2: []}), "the ban at response position 2 needs at least one non-empty token sequence"),
        (dict(bans={2: [[8], []]}), "needs at least one non-empty token sequence"),
        (dict(bans={14: [[8, 9, 10]]}), r"the banned sequence \[8, 9, 10\] at response position 14 leaves the response"),
        (dict(bans={2: [[8, 3]]}), r"the banned sequence \[8, 3\] contains mask_id 3"),
        (dict(bans={2: [[8, 9]]}, prefill={3: [20]}), "the ban at response position 2 overlaps a prefill span in row 0"),
        (dict(bans={2: [[8, 9]]}, interventions={5: {1: [20, 21]}}), r"spans \[2, 4\), which an intervention or another ban"),
        (
            dict(bans={2: [[8, 9]], 3: [[8]]}),
            r"the ban at response position 3 spans \[3, 4\), which an intervention or another ban",
        ),
        (dict(bans=[{}, {}]), "bans has 2 entries for a batch of 1"),
    ],
)
def test_bad_bans_are_refused_in_one_line_before_sampling(model, tokenizer, settings, message):
    with pytest.raises(MosaError, match=message) as error:
        generate(model, PROMPT, config=config(tokenizer), **settings)
    assert "\n" not in str(error.value)
