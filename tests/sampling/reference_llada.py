"""A plain, line-by-line implementation of the published LLaDA sampler (docs/sampler.md).

Kept deliberately naive (full logits, a Python loop per row, torch.topk) so that it reads as the
algorithm; mosa's sampler must agree with it token for token at temperature 0. Its one addition:
`initial_response`, tokens written into the response after `prompt_index` is computed, which is
how mosa defines prefill. Special ids are arguments instead of LLaDA's constants.
"""

import torch
import torch.nn.functional as F


def gumbel_noisy_logits(logits, temperature):
    if temperature == 0:
        return logits  # the same tensor: later in-place writes reach the logits too
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    return logits.exp() / (-torch.log(noise)) ** temperature


def tokens_per_step(block_mask_index, steps):
    mask_count = block_mask_index.sum(dim=1, keepdim=True)
    base = mask_count // steps
    remainder = mask_count % steps
    counts = torch.zeros(mask_count.size(0), steps, dtype=torch.int64, device=mask_count.device) + base
    for row in range(mask_count.size(0)):
        counts[row, : remainder[row]] += 1
    return counts


@torch.no_grad()
def reference_generate(
    model,
    prompt,
    attention_mask=None,
    steps=128,
    gen_length=128,
    block_length=128,
    temperature=0.0,
    cfg_scale=0.0,
    remasking="low_confidence",
    mask_id=None,
    eos_id=None,
    eot_id=None,
    logits_eos_inf=False,
    confidence_eos_eot_inf=False,
    initial_response=None,
):
    x = torch.full((prompt.shape[0], prompt.shape[1] + gen_length), mask_id, dtype=torch.long, device=prompt.device)
    x[:, : prompt.shape[1]] = prompt.clone()
    if attention_mask is not None:
        attention_mask = torch.cat(
            [attention_mask, torch.ones((prompt.shape[0], gen_length), dtype=attention_mask.dtype, device=prompt.device)], dim=-1
        )
    prompt_index = x != mask_id
    if initial_response is not None:
        x[:, prompt.shape[1] :] = initial_response

    assert gen_length % block_length == 0
    num_blocks = gen_length // block_length
    assert steps % num_blocks == 0
    steps = steps // num_blocks

    for block in range(num_blocks):
        block_start = prompt.shape[1] + block * block_length
        block_mask_index = x[:, block_start : block_start + block_length] == mask_id
        counts = tokens_per_step(block_mask_index, steps)
        for i in range(steps):
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                x_ = torch.cat([x, un_x], dim=0)
                attention_mask_ = None if attention_mask is None else torch.cat([attention_mask, attention_mask], dim=0)
                logits = model(x_, attention_mask=attention_mask_).logits
                logits, un_logits = torch.chunk(logits, 2, dim=0)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            else:
                logits = model(x, attention_mask=attention_mask).logits

            if logits_eos_inf:
                logits[:, :, eos_id] = -torch.inf
            logits_with_noise = gumbel_noisy_logits(logits, temperature)
            x0 = torch.argmax(logits_with_noise, dim=-1)
            if confidence_eos_eot_inf:
                logits_with_noise[:, :, eos_id] = logits[:, :, eot_id] = -torch.inf

            if remasking == "low_confidence":
                p = F.softmax(logits, dim=-1)
                x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
            elif remasking == "random":
                x0_p = torch.rand((x0.shape[0], x0.shape[1]), device=x0.device)
            else:
                raise NotImplementedError(remasking)

            x0_p[:, block_start + block_length :] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -torch.inf)
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            for row in range(confidence.shape[0]):
                _, select_index = torch.topk(confidence[row], k=int(counts[row, i]))
                transfer_index[row, select_index] = True
            x[transfer_index] = x0[transfer_index]
    return x


class WithoutLogitsToKeep(torch.nn.Module):
    """A module behind a forward that takes no `logits_to_keep`, so that mosa's sampler computes
    every logit, as this reference does (its full-logits path, to compare with the fast one)."""

    def __init__(self, module):
        super().__init__()
        self.module, self.config = module, module.config

    def forward(self, input_ids, attention_mask=None):
        return self.module(input_ids, attention_mask=attention_mask)
