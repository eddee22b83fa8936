"""How a dLLM decoded one response: a short summary of the step at which each position was committed.

The paper (arXiv 2508.12398, section 3) finds that dLLMs decode nearly left to right, which is why a
prompt-only attacker cannot reach the middle of the response. Each record keeps the summary:

    kendall_tau           Kendall's tau-b between response position and commit step over the
                          positions the model decoded (1: strictly left to right, -1: right to left)
    kendall_tau_content   the same without EOS/EoT tokens (LLaDA pads with EOS and often commits
                          the trailing EOS first, which hides the order of the text itself)
    commit_step_by_decile mean commit step of the model-decoded positions in each tenth of the
                          response (None where a tenth has none)
    decoded               positions the model decoded
    attack_written        positions the attack fixed: prefilled, or written by an intervention
    eos_tokens            positions holding EOS, EoT or padding; first_eos: the first of them
    masks_left            positions still masked at the end (the model chose the mask token)
"""

from __future__ import annotations

from mosa.stats import kendall_tau


def decoding_order(
    response_ids: list[int], commit_step: list[int], *, written: set[int], eos_ids: set[int], mask_id: int
) -> dict:
    """The summary for one response. `written`: positions an intervention wrote (their commit step is
    the attack's, not the model's); prefilled positions carry commit step -1 and are left out anyway."""
    length = len(response_ids)
    decoded = [p for p in range(length) if commit_step[p] >= 0 and p not in written]
    content = [p for p in decoded if response_ids[p] not in eos_ids]
    eos = [p for p in range(length) if response_ids[p] in eos_ids]
    deciles: list[list[int]] = [[] for _ in range(10)]
    for position in decoded:
        deciles[10 * position // length].append(commit_step[position])
    rounded = lambda value: None if value is None else round(value, 4)  # noqa: E731
    return {
        "kendall_tau": rounded(kendall_tau(decoded, [commit_step[p] for p in decoded])),
        "kendall_tau_content": rounded(kendall_tau(content, [commit_step[p] for p in content])),
        "commit_step_by_decile": [round(sum(steps) / len(steps), 2) if steps else None for steps in deciles],
        "decoded": len(decoded),
        "attack_written": sum(1 for p in range(length) if commit_step[p] < 0 or p in written),
        "eos_tokens": len(eos),
        "first_eos": eos[0] if eos else None,
        "masks_left": sum(1 for token in response_ids if token == mask_id),
    }
