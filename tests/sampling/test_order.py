"""The decoding-order summaries on hand-made commit steps: which positions count, and the EOS-first
effect they must expose."""

import math

import pytest
import torch

from mosa.sampling import response_order, summarise_order

EOS, WORD, MASK = 2, 7, 99


def test_positions_left_masked_are_never_decoded_in_either_summary():
    # 0 prefilled (-1); 3 picked at the last step, but the model chose the mask token; 5 never picked
    # (-1) and still masked; the rest decoded: content left to right, the trailing EOS first.
    response_ids = [WORD, WORD, WORD, MASK, WORD, MASK, WORD, EOS]
    commit_step = [-1, 1, 2, 7, 4, -1, 5, 0]
    one = response_order(response_ids, commit_step, end_ids={EOS}, mask_id=MASK)
    many = summarise_order(torch.tensor([response_ids]), torch.tensor([commit_step]), end_ids={EOS}, mask_id=MASK, steps=8)

    counts = {"decoded": 5, "attack_written": 1, "undecoded": 2}
    assert {key: one[key] for key in counts} == {key: many[key] for key in counts} == counts
    # Were position 3 counted at step 7, the content would not read strictly left to right.
    assert one["kendall_tau_content"] == many["kendall_tau_content"]["mean"] == 1.0
    assert many["mean_position_by_step"] == [7.0, 1.0, 2.0, None, 4.0, 6.0, None, None]
    assert one["commit_step_by_decile"] == [None, 1.0, 2.0, None, None, 4.0, None, 5.0, 0.0, None]


def test_eos_committed_first_is_told_apart_from_the_content_order():
    # One response of 8 positions: content at 0-4, EOS padding at 5-7. The padding is committed
    # first (steps 0-2, from the right end), then the content left to right (steps 3-7).
    response_ids = torch.tensor([[WORD] * 5 + [EOS] * 3])
    commit_step = torch.tensor([[3, 4, 5, 6, 7, 2, 1, 0]])
    summary = summarise_order(response_ids, commit_step, end_ids=[EOS], mask_id=MASK, steps=8)

    # All positions: 10 concordant content pairs; 15 content-EOS pairs and 3 EOS pairs discordant.
    assert summary["kendall_tau_all"]["mean"] == (10 - 18) / 28
    assert summary["kendall_tau_all"]["mean"] < 0 < summary["kendall_tau_content"]["mean"] == 1.0
    assert summary["end_commits"] == {"count": 3, "mean_step": 1.0}
    assert summary["content_commits"] == {"count": 5, "mean_step": 5.0}
    assert summary["end_commits"]["count"] + summary["content_commits"]["count"] == summary["decoded"] == 8
    assert summary["mean_position_by_step"] == [7.0, 6.0, 5.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert summary["mean_content_position_by_step"] == [None, None, None, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert summary["end_share_by_step"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_several_tokens_per_step_and_prefilled_positions():
    # Two responses, 4 steps over 6 positions; -1 marks prefilled positions, which are left out.
    response_ids = torch.tensor([[WORD, WORD, WORD, WORD, EOS, EOS], [WORD, WORD, WORD, WORD, WORD, WORD]])
    commit_step = torch.tensor([[-1, 0, 1, 1, 3, 2], [0, 0, 1, 1, 2, 3]])
    summary = summarise_order(response_ids, commit_step, end_ids=[EOS], mask_id=MASK, steps=4)

    assert (summary["decoded"], summary["attack_written"], summary["undecoded"]) == (11, 1, 0)
    # step 0: positions 1 (row 0), 0 and 1 (row 1); step 3: positions 4 (row 0) and 5 (row 1)
    assert summary["mean_position_by_step"] == [2 / 3, 2.5, 4.5, 4.5]
    assert summary["mean_content_position_by_step"] == [2 / 3, 2.5, 4.0, 5.0]
    assert summary["end_share_by_step"] == [0.0, 0.0, 0.5, 0.5]
    assert summary["kendall_tau_content"]["n"] == 2
    # Content left to right in both rows, but positions committed at one step tie in the step:
    # row 0: 2 concordant pairs, 1 tied in step, of 3; row 1: 13 concordant, 2 tied in step, of 15.
    assert summary["kendall_tau_content"]["mean"] == pytest.approx((2 / math.sqrt(2 * 3) + 13 / math.sqrt(13 * 15)) / 2)
    assert summary["end_commits"] == {"count": 2, "mean_step": 2.5}


def test_one_response_with_prefill_and_an_intervention():
    # 10 positions: 0-1 prefilled (-1), 2-3 written by an intervention at step 1, the rest decoded right
    # to left, EOS at 8 and 9 committed first.
    response = [5, 6, 7, 7, 9, 9, 9, 9, EOS, EOS]
    steps = [-1, -1, 1, 1, 5, 4, 3, 2, 0, 0]
    order = response_order(response, steps, written={2, 3}, end_ids={EOS}, mask_id=MASK)
    assert (order["decoded"], order["attack_written"], order["undecoded"]) == (6, 4, 0)
    assert order["kendall_tau"] < -0.9 and order["kendall_tau_content"] == pytest.approx(-1.0)
    assert order["commit_step_by_decile"] == [None, None, None, None, 5.0, 4.0, 3.0, 2.0, 0.0, 0.0]
    assert (order["eos_tokens"], order["first_eos"]) == (2, 8)
