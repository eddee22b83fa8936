"""Config of a tiny stand-in for remote-code dLLM checkpoints (LLaDA, Dream) in tests."""

from transformers import PretrainedConfig


class TinyDLMConfig(PretrainedConfig):
    model_type = "tiny-dlm"  # overwritten per family in the saved config.json

    def __init__(self, vocab_size=64, hidden_size=16, mask_token_id=None, shifted=False, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.mask_token_id = mask_token_id
        self.shifted = shifted
        super().__init__(**kwargs)
