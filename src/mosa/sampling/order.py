"""The order in which the sampler decoded its responses, summarised from its trace (`commit_step`).

The paper (Xie et al., arXiv 2508.12398, section 3) finds that dLLMs decode nearly left to right,
which is why a prompt-only attacker cannot reach the middle of the response first. Two summaries
read the same trace by the same rule: `response_order` for one response (each eval record's
`order`) and `summarise_order` for N responses (experiment C, `mosa.analysis.decode_order`).

Every response position is one of three kinds:

    attack-written  the caller fixed its token: a prefill (commit step -1) or an intervention (its
                    step is recorded like a model commit, so the caller says which positions it wrote)
    never decoded   it still holds the mask token at the end, whatever its commit step. The sampler
                    leaves a mask where the model predicts the mask token itself: committing it
                    keeps the position masked, it competes again, and its block can run out of
                    commits first. Its commit step (the last step that picked it, or -1 if none
                    did) says nothing about the order of the text, so it is left out.
    decoded         every other position: the model committed a token there, at its commit step.

Only decoded positions enter the order statistics. The three counts (`decoded`, `attack_written`,
`undecoded`) add up to the response length. Decoded positions holding an end token (EOS, end of
turn, padding) are told apart from content: LLaDA pads its responses with EOS and often commits the
trailing EOS first, which hides the order of the text itself.

Kendall's tau-b between position and commit step scores a response's order: 1 strictly left to
right, -1 right to left (mosa.stats.kendall_tau).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch

from mosa.stats import kendall_tau, mean_and_spread


@dataclass(frozen=True)
class PositionKinds:
    """N x L boolean masks of the response positions, by the rule in the module docstring."""

    decoded: torch.Tensor
    attack_written: torch.Tensor
    undecoded: torch.Tensor
    end: torch.Tensor  # decoded, holding an end token
    content: torch.Tensor  # decoded, holding anything else

    def counts(self) -> dict[str, int]:
        return {
            "decoded": int(self.decoded.sum()),
            "attack_written": int(self.attack_written.sum()),
            "undecoded": int(self.undecoded.sum()),
        }


def position_kinds(
    response_ids: torch.Tensor,
    commit_step: torch.Tensor,
    *,
    end_ids: Collection[int],
    mask_id: int,
    written: torch.Tensor | None = None,
) -> PositionKinds:
    """Classify N x L response positions. `written`: N x L, True where an intervention wrote."""
    undecoded = response_ids == mask_id
    fixed_by_caller = commit_step < 0 if written is None else (commit_step < 0) | written
    attack_written = fixed_by_caller & ~undecoded
    decoded = ~undecoded & ~attack_written
    end = decoded & torch.isin(response_ids, torch.tensor(sorted(end_ids)))
    return PositionKinds(decoded=decoded, attack_written=attack_written, undecoded=undecoded, end=end, content=decoded & ~end)


def tau_per_response(commit_step: torch.Tensor, selected: torch.Tensor) -> list[float | None]:
    """Kendall's tau between position and commit step over each response's selected positions (N x L)."""
    positions = torch.arange(commit_step.shape[1])
    return [kendall_tau(positions[chosen], steps[chosen]) for steps, chosen in zip(commit_step, selected)]


def response_order(
    response_ids: list[int],
    commit_step: list[int],
    *,
    end_ids: Collection[int],
    mask_id: int,
    written: Collection[int] = (),
) -> dict:
    """The order of one response, as an eval record keeps it. `written`: the positions an
    intervention wrote.

        kendall_tau           tau over the decoded positions
        kendall_tau_content   the same without end tokens
        commit_step_by_decile mean commit step of the decoded positions in each tenth of the
                              response (None where a tenth has none)
        decoded, attack_written, undecoded   the counts of the three kinds of position
        eos_tokens, first_eos positions holding an end token (of any kind), and the first of them
    """
    length = len(response_ids)
    ids, steps = torch.tensor([response_ids]), torch.tensor([commit_step])  # 1 x L
    by_intervention = torch.zeros((1, length), dtype=torch.bool)
    by_intervention[0, list(written)] = True
    kinds = position_kinds(ids, steps, end_ids=end_ids, mask_id=mask_id, written=by_intervention)
    deciles: list[list[int]] = [[] for _ in range(10)]
    for position in kinds.decoded[0].nonzero().flatten().tolist():
        deciles[10 * position // length].append(commit_step[position])
    ends = torch.isin(ids[0], torch.tensor(sorted(end_ids))).nonzero().flatten().tolist()
    rounded = lambda value: None if value is None else round(value, 4)  # noqa: E731
    return {
        "kendall_tau": rounded(tau_per_response(steps, kinds.decoded)[0]),
        "kendall_tau_content": rounded(tau_per_response(steps, kinds.content)[0]),
        "commit_step_by_decile": [round(sum(tenth) / len(tenth), 2) if tenth else None for tenth in deciles],
        **kinds.counts(),
        "eos_tokens": len(ends),
        "first_eos": ends[0] if ends else None,
    }


def summarise_order(
    response_ids: torch.Tensor,
    commit_step: torch.Tensor,
    *,
    end_ids: Collection[int],
    mask_id: int,
    steps: int,
) -> dict:
    """The decoding order of N responses (N x L tokens and commit steps), as experiment C reports it.

    Per step: the mean position of the tokens committed then (all, and content only) and the share
    of end tokens among them. Per response: Kendall's tau, on all decoded positions and on content
    only, then their mean and spread. The count and mean step of end-token commits against content
    commits, and the counts of the three kinds of position."""
    responses, length = commit_step.shape
    positions = torch.arange(length).expand(responses, length)  # N x L
    kinds = position_kinds(response_ids, commit_step, end_ids=end_ids, mask_id=mask_id)

    def mean_position_by_step(selected: torch.Tensor) -> list[float | None]:
        counts = torch.bincount(commit_step[selected], minlength=steps)  # steps
        totals = torch.bincount(commit_step[selected], weights=positions[selected].double(), minlength=steps)
        return [float(total / count) if count else None for total, count in zip(totals, counts)]

    def commits(selected: torch.Tensor) -> dict:
        count = int(selected.sum())
        return {"count": count, "mean_step": float(commit_step[selected].double().mean()) if count else None}

    committed_per_step = torch.bincount(commit_step[kinds.decoded], minlength=steps)  # steps
    ends_per_step = torch.bincount(commit_step[kinds.end], minlength=steps)
    return {
        "responses": responses,
        "steps": steps,
        "mean_position_by_step": mean_position_by_step(kinds.decoded),
        "mean_content_position_by_step": mean_position_by_step(kinds.content),
        "end_share_by_step": [float(e / c) if c else None for e, c in zip(ends_per_step, committed_per_step)],
        "kendall_tau_all": mean_and_spread(tau_per_response(commit_step, kinds.decoded)),
        "kendall_tau_content": mean_and_spread(tau_per_response(commit_step, kinds.content)),
        "end_commits": commits(kinds.end),
        "content_commits": commits(kinds.content),
        **kinds.counts(),
    }
