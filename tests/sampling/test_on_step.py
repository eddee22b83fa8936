"""generate(on_step=...): the canvas after every step that committed tokens, and a way to stop."""

import pytest
import torch

from mosa.sampling import generate
from tests.conftest import left_pad, tiny_llama


def test_on_step_sees_each_step_and_changes_nothing(tokenizer):
    lm = tiny_llama(tokenizer)
    ids, mask = left_pad([[5, 6, 7], [8, 9]], lm.pad_id)
    config = lm.sampler_config(gen_length=8, steps=4, block_length=4, temperature=1.0)
    seen = []
    output = generate(lm.module, ids, mask, config=config, on_step=lambda step, canvas: seen.append((step, canvas.clone())))
    assert torch.equal(output.sequences, generate(lm.module, ids, mask, config=config).sequences)
    assert [step for step, _ in seen] == [0, 1, 2, 3]
    masks_left = [int((canvas[:, 3:] == lm.mask_id).sum()) for _, canvas in seen]
    assert masks_left == [12, 8, 4, 0]  # two tokens per row per step
    assert torch.equal(seen[-1][1], output.sequences)


def test_raising_in_on_step_stops_sampling(tokenizer):
    lm = tiny_llama(tokenizer)
    ids, mask = left_pad([[5, 6, 7]], lm.pad_id)
    steps = []

    def stop_after_two(step, canvas):
        steps.append(step)
        if len(steps) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(lm.module, ids, mask, config=lm.sampler_config(gen_length=8, steps=8, block_length=8), on_step=stop_after_two)
    assert steps == [0, 1]


@pytest.mark.parametrize("decoding", ["threshold", "dual-cache"])
def test_on_step_reports_fast_decodings_too(tokenizer, decoding):
    """mosa serve streams from on_step, whatever the decoding: masks only ever fill, the last canvas is the answer."""
    lm = tiny_llama(tokenizer)
    ids, mask = left_pad([[5, 6, 7], [8, 9]], lm.pad_id)
    config = lm.sampler_config(gen_length=8, steps=8, block_length=4, decoding=decoding, threshold=0.5)
    seen = []
    output = generate(lm.module, ids, mask, config=config, on_step=lambda step, canvas: seen.append(canvas.clone()))
    masks_left = [int((canvas[:, 3:] == lm.mask_id).sum()) for canvas in seen]
    assert seen and masks_left == sorted(masks_left, reverse=True) and torch.equal(seen[-1], output.sequences)
