"""The decoding-order summary on hand-made commit steps, and the EOS-first effect it must expose."""

import math

import pytest
import torch

from mosa.analysis import summarise_order

EOS, WORD = 2, 7


def test_eos_committed_first_is_told_apart_from_the_content_order():
    # One response of 8 positions: content at 0-4, EOS padding at 5-7. The padding is committed
    # first (steps 0-2, from the right end), then the content left to right (steps 3-7).
    response_ids = torch.tensor([[WORD] * 5 + [EOS] * 3])
    commit_step = torch.tensor([[3, 4, 5, 6, 7, 2, 1, 0]])
    summary = summarise_order(commit_step, response_ids, end_ids=[EOS], steps=8)

    # All positions: 10 concordant content pairs; 15 content-EOS pairs and 3 EOS pairs discordant.
    assert summary["kendall_tau_all"]["mean"] == (10 - 18) / 28
    assert summary["kendall_tau_all"]["mean"] < 0 < summary["kendall_tau_content"]["mean"] == 1.0
    assert summary["end_commits"] == {"count": 3, "mean_step": 1.0}
    assert summary["content_commits"] == {"count": 5, "mean_step": 5.0}
    assert summary["end_commits"]["count"] + summary["content_commits"]["count"] == summary["decoded_positions"] == 8
    assert summary["mean_position_by_step"] == [7.0, 6.0, 5.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert summary["mean_content_position_by_step"] == [None, None, None, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert summary["end_share_by_step"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_several_tokens_per_step_and_prefilled_positions():
    # Two responses, 4 steps over 6 positions; -1 marks prefilled positions, which are left out.
    response_ids = torch.tensor([[WORD, WORD, WORD, WORD, EOS, EOS],
                                 [WORD, WORD, WORD, WORD, WORD, WORD]])
    commit_step = torch.tensor([[-1, 0, 1, 1, 3, 2],
                                [0, 0, 1, 1, 2, 3]])
    summary = summarise_order(commit_step, response_ids, end_ids=[EOS], steps=4)

    assert summary["decoded_positions"] == 11 and summary["undecoded_positions"] == 1
    # step 0: positions 1 (row 0), 0 and 1 (row 1); step 3: positions 4 (row 0) and 5 (row 1)
    assert summary["mean_position_by_step"] == [2 / 3, 2.5, 4.5, 4.5]
    assert summary["mean_content_position_by_step"] == [2 / 3, 2.5, 4.0, 5.0]
    assert summary["end_share_by_step"] == [0.0, 0.0, 0.5, 0.5]
    assert summary["kendall_tau_content"]["n"] == 2
    # Content left to right in both rows, but positions committed at one step tie in the step:
    # row 0: 2 concordant pairs, 1 tied in step, of 3; row 1: 13 concordant, 2 tied in step, of 15.
    assert summary["kendall_tau_content"]["mean"] == pytest.approx((2 / math.sqrt(2 * 3) + 13 / math.sqrt(13 * 15)) / 2)
    assert summary["end_commits"] == {"count": 2, "mean_step": 2.5}
