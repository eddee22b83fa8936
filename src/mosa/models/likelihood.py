"""Per-token log-probabilities of a given response under a masked-diffusion LM, three ways.

A mask predictor has no single log p(response | prompt): it predicts masked tokens from whatever is
revealed. Each reading below uses the same canvas, [prompt ; gen_length response positions], with
the response's m tokens at response positions [position, position + m) and every other response
position masked throughout (as when the target answers with gen_length tokens), and differs only
in what of the response is revealed when a token is scored. Costs are counted in forward passes
(one canvas through the model; canvases are batched, `batch_size` per call):

  masked_logprobs          log p(y_i | prompt, the whole response masked), at every i at once: how
                           MOSA's objective and dLLM-GCG read a phrase's likelihood. 1 pass.
  teacher_forced_logprobs  log p(y_i | prompt, y_<i revealed, y_>=i masked): left to right, the order
                           LLaDA's sampler mostly follows, with the exact top-k tokens at each
                           position (what PAL reads from an API's top-5 log-probabilities). m passes.
  elbo_logprobs            LLaDA's Monte-Carlo ELBO (its get_log_likelihood): each sample masks a
                           random subset of the response and scores the masked tokens, weighted by
                           1/t, t the fraction masked. mc_num passes.

The ELBO's exact value, which the estimate converges to. LLaDA draws the number of masked tokens l
uniformly from 1..m, masks a uniformly random subset M of that size and weights its tokens by m/l:

    ELBO = sum over non-empty M of  w(|M|) * sum over i in M of log p(y_i | y outside M revealed),
    w(l) = (1/m) * (m/l) / C(m, l) = 1 / (l * C(m, l)).

The same weights come from the continuous form (t ~ U(0,1), each token masked with probability t,
weight 1/t): integral of t^(l-1) (1-t)^(m-l) dt = (l-1)! (m-l)! / m! = 1 / (l * C(m, l)). And they are
the chance that a uniformly random decoding order scores token i with exactly the tokens outside M
revealed ((m-l)! (l-1)! / m! again), so the ELBO is the average, over all m! orders, of the order's
left-to-right log-likelihood; teacher forcing is the one order 0, 1, ..., m-1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mosa.errors import MosaError
from mosa.models.diffusion_lm import DiffusionLM


@dataclass
class TokenLogprobs:
    """A response's tokens, each one's log-probability, and what reading them cost."""

    token_ids: list[int]  # m
    # m: log p of each token; for the ELBO, each token's share of the estimate (they sum to it)
    logprobs: list[float]
    forward_passes: int  # canvases the model read
    # teacher forcing with top_k > 0: m x k, the k most likely tokens at each position, best first
    top_ids: list[list[int]] | None = None
    top_logprobs: list[list[float]] | None = None

    @property
    def total(self) -> float:
        """log p of the whole response (the ELBO's estimate for `elbo_logprobs`)."""
        return sum(self.logprobs)


def masked_logprobs(
    lm: DiffusionLM, prompt_ids: list[int], response_ids: list[int], *, gen_length: int, position: int = 0
) -> TokenLogprobs:
    """Each response token's log-probability with the whole response masked. 1 forward pass."""
    check_response(prompt_ids, response_ids, gen_length, position)
    hidden = torch.ones((1, len(response_ids)), dtype=torch.bool)  # every response token masked
    canvas, columns = response_canvases(lm, prompt_ids, response_ids, hidden, gen_length, position)
    (log_probs,) = batched_logprobs(lm, canvas, columns.unsqueeze(0), batch_size=1)  # 1 x m x V
    return TokenLogprobs(list(response_ids), picked_logprobs(log_probs, [response_ids])[0].tolist(), forward_passes=1)


def teacher_forced_logprobs(
    lm: DiffusionLM,
    prompt_ids: list[int],
    response_ids: list[int],
    *,
    gen_length: int,
    position: int = 0,
    top_k: int = 0,
    batch_size: int = 16,
    until_miss: bool = False,
) -> TokenLogprobs:
    """Token i's log-probability with tokens < i revealed and the rest masked, and with top_k > 0 the
    exact top-k tokens there (over the whole vocabulary, the mask token included: what the model
    gives). m forward passes, in ceil(m / batch_size) calls.

    until_miss: stop after the first token that is not the most likely at its position, as PAL reads
    an API (one call per position; a candidate is dropped at its first miss); the lists then end at
    that token. Calls then read 1, 1, 2, 4, ... canvases (each as many as read so far, at most
    batch_size), so forward_passes is at most about twice the tokens returned."""
    check_response(prompt_ids, response_ids, gen_length, position)
    m = len(response_ids)
    revealed = torch.arange(m).unsqueeze(1) > torch.arange(m).unsqueeze(0)  # m x m: canvas i shows tokens < i
    canvases, columns = response_canvases(lm, prompt_ids, response_ids, ~revealed, gen_length, position)
    scored = columns.unsqueeze(1)  # m x 1: canvas i is read at token i's column
    picked, top_ids, top_logprobs = [], [], []
    read, kept = 0, m  # canvases read; tokens returned (all, or through the first miss)
    while read < kept:
        size = min(batch_size, max(1, read) if until_miss else batch_size, m - read)
        (log_probs,) = batched_logprobs(lm, canvases[read : read + size], scored[read : read + size], size)  # b x 1 x V
        tokens = response_ids[read : read + size]  # the token each canvas of the batch scores
        picked += picked_logprobs(log_probs, [[token] for token in tokens]).flatten().tolist()
        if top_k > 0 or until_miss:
            top = log_probs[:, 0].topk(max(top_k, 1), dim=-1)  # b x k
            top_ids += top.indices.tolist()
            top_logprobs += top.values.tolist()
        if until_miss:
            missed = (top.indices[:, 0].cpu() != torch.tensor(tokens)).nonzero()
            if len(missed):
                kept = read + int(missed[0]) + 1
        read += size
    scores = TokenLogprobs(list(response_ids[:kept]), picked[:kept], forward_passes=read)
    if top_k > 0:
        scores.top_ids, scores.top_logprobs = top_ids[:kept], top_logprobs[:kept]
    return scores


def elbo_logprobs(
    lm: DiffusionLM,
    prompt_ids: list[int],
    response_ids: list[int],
    *,
    gen_length: int,
    position: int = 0,
    mc_num: int = 128,
    batch_size: int = 16,
    seed: int = 0,
) -> TokenLogprobs:
    """LLaDA's Monte-Carlo ELBO of the response, as each token's share of it. mc_num forward passes.

    Sample j masks l_j tokens, l_j uniform on 1..m, stratified as in LLaDA's get_log_likelihood (one
    uniform draw, then the counts spread evenly over the samples: every count equally often when m
    divides mc_num), chosen uniformly among the response's tokens; each masked token i contributes
    (m / l_j) * log p(y_i | the unmasked ones) and the estimate is the mean over samples. Its
    expectation is the exact ELBO of the module docstring. Deterministic given `seed`.
    With gen_length = m and position 0 the canvas is LLaDA's own, [prompt ; response]."""
    check_response(prompt_ids, response_ids, gen_length, position)
    m = len(response_ids)
    masked, counts = elbo_masks(m, mc_num, seed)
    canvases, columns = response_canvases(lm, prompt_ids, response_ids, masked, gen_length, position)
    picked = torch.cat(
        [picked_logprobs(log_probs, [response_ids]) for log_probs in batched_logprobs(lm, canvases, columns, batch_size)]
    )  # mc_num x m
    weighted = torch.where(masked, picked * m / counts.unsqueeze(1), 0.0)  # 1/t = m/l_j where masked, else 0
    return TokenLogprobs(list(response_ids), weighted.mean(dim=0).tolist(), forward_passes=mc_num)


def elbo_masks(m: int, mc_num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The masks of the ELBO's mc_num samples over an m-token response: masked (mc_num x m, True
    where masked) and counts (mc_num, the tokens each masks). Counts are uniform on 1..m and
    stratified (one uniform draw, then spread evenly over the samples), each sample's subset uniform
    among those of its size; deterministic given `seed`."""
    if not isinstance(mc_num, int) or isinstance(mc_num, bool) or mc_num < 1:
        raise MosaError(f"mc_num={mc_num!r} must be an integer >= 1")
    generator = torch.Generator().manual_seed(seed)
    first = int(torch.randint(m, (1,), generator=generator))
    counts = (first + torch.arange(mc_num) * m // mc_num) % m + 1  # mc_num: each uniform on 1..m
    # A random rank per token (the argsort of uniforms is a uniform permutation): the l_j tokens
    # ranked lowest are a uniform subset of size l_j.
    ranks = torch.rand((mc_num, m), generator=generator).argsort(dim=1)  # mc_num x m
    return ranks < counts.unsqueeze(1), counts


def response_canvases(lm, prompt_ids, response_ids, hidden: torch.Tensor, gen_length: int, position: int):
    """hidden: N x m, True where a response token is masked -> N canvases [prompt ; gen_length
    positions] (N x (P + gen_length)) with the response at [position, position + m) of the response,
    and the response's canvas columns (m)."""
    prompt, response = torch.tensor(prompt_ids), torch.tensor(response_ids)
    start = len(prompt_ids) + position
    canvases = torch.full((len(hidden), len(prompt_ids) + gen_length), lm.mask_id, dtype=torch.long)
    canvases[:, : len(prompt_ids)] = prompt
    canvases[:, start : start + len(response_ids)] = torch.where(hidden, lm.mask_id, response)
    return canvases, torch.arange(start, start + len(response_ids))


@torch.no_grad()
def batched_logprobs(lm: DiffusionLM, canvases: torch.Tensor, columns: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Log-probabilities at chosen columns of each canvas, batch_size canvases per forward call.
    canvases: N x T; columns: N x c (or 1 x c, the same for all) -> yields b x c x V, float32, on the model's device."""
    device = lm.device
    columns = columns.expand(len(canvases), -1)
    for start in range(0, len(canvases), batch_size):
        logits = lm.logits(canvases[start : start + batch_size].to(device))  # b x T x V, aligned
        rows = torch.arange(len(logits), device=device).unsqueeze(1)  # b x 1
        kept = logits[rows, columns[start : start + batch_size].to(device)]  # b x c x V
        yield F.log_softmax(kept.float(), dim=-1)


def picked_logprobs(log_probs: torch.Tensor, token_ids: list[list[int]]) -> torch.Tensor:
    """b x c x V log-probabilities, token ids b x c (or 1 x c, the same for all) -> their log-probabilities, b x c, on the CPU."""
    tokens = torch.tensor(token_ids, device=log_probs.device).expand(log_probs.shape[:2])
    return log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).cpu()


def check_response(prompt_ids: list[int], response_ids: list[int], gen_length: int, position: int) -> None:
    """Refuse an empty prompt or response, and a response that leaves the response canvas."""
    if not prompt_ids:
        raise MosaError("the prompt is empty; a response is scored after a prompt")
    if not response_ids:
        raise MosaError("the response to score is empty; give at least one token")
    end = position + len(response_ids)
    if position < 0 or end > gen_length:
        raise MosaError(
            f"the response's {len(response_ids)} tokens at response position {position} span [{position}, {end}), "
            f"outside the response canvas [0, {gen_length}); raise gen_length or move it"
        )
