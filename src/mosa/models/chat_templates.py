"""Chat templates per model family, used when a tokenizer ships without one.

A checkpoint's own `chat_template` always wins; these are written from the families' documented
formats so that locally built tokenizers (tests, the organism) render prompts the same way.
"""

# LLaDA / LLaDA-1.5 / MMaDA: Llama-3 style headers, BOS <|startoftext|>, turns closed by <|eot_id|>.
LLADA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

# Dream: ChatML (Qwen2.5), with Qwen's default system turn when none is given.
DREAM_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Small bidirectional Llama models built by mosa (tests, the organism): the LLaDA layout with
# short role markers, so that prompts stay short in a small vocabulary.
BIDIRECTIONAL_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
