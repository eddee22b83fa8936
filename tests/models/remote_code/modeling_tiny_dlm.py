"""A tiny bidirectional mask predictor shipped as remote code, like LLaDA's and Dream's checkpoints.

It takes a 2-D padding mask (LLaDA) or Dream's 4-D boolean mask / "full", token ids or input
embeddings in their place (as both families' code does), and with `shifted` it emits Dream's
convention: the prediction for token i at position i - 1.
"""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_tiny_dlm import TinyDLMConfig


class TinyDLM(PreTrainedModel):
    config_class = TinyDLMConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(512, config.hidden_size)
        self.mix = nn.Linear(config.hidden_size, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        embeds = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # B x T x d
        shape, device = embeds.shape[:2], embeds.device
        if position_ids is None:
            position_ids = torch.arange(shape[1], device=device).expand(shape)
        hidden = embeds + self.position(position_ids)
        if attention_mask is None or isinstance(attention_mask, str):
            visible = torch.ones(shape, dtype=torch.bool, device=device)
        elif attention_mask.dim() == 4:
            visible = attention_mask[:, 0].any(dim=1)
        else:
            visible = attention_mask.bool()
        weights = visible.unsqueeze(-1).float()
        context = (hidden * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
        logits = self.head(torch.tanh(hidden + self.mix(context))) * 4.0
        if self.config.shifted:
            logits = torch.cat([logits[:, 1:], logits[:, -1:]], dim=1)
        return CausalLMOutput(logits=logits)
