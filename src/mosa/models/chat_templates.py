"""Chat templates per model family, used when a tokenizer ships without one.

A checkpoint's own `chat_template` always wins; these are written from the families' documented
formats so that locally built tokenizers (tests, the organism) render prompts the same way.
`render_conversation` renders any message list with a tokenizer's template, or refuses it.
"""

from mosa.errors import MosaError

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


def render_conversation(tokenizer, messages: list[dict]) -> str:
    """A conversation rendered by the tokenizer's chat template, followed by the assistant header.

    Any message list: fabricated assistant turns, system messages mid-dialogue. What the template
    cannot render is refused in one line rather than dropped: a conversation the template raises on
    (some templates demand alternating user/assistant roles), and one whose messages it leaves out or
    reorders (some skip roles they do not know, some move the system message into the last user
    turn). The second is found by rendering the conversation again with each message's content
    replaced by a marker of its own, and looking for the markers in order: content-free, so short
    messages ("Yes.") cannot be found by accident.
    """
    from jinja2 import TemplateError  # what transformers renders templates with, and raises through

    for number, message in enumerate(messages, start=1):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise MosaError(f"message {number} must be a mapping with a string 'role' and a string 'content'")
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        markers = [f"mosa-message-{number}-marker" for number in range(len(messages))]
        marked = [{**message, "content": marker} for message, marker in zip(messages, markers)]
        rendered_markers = tokenizer.apply_chat_template(marked, add_generation_prompt=True, tokenize=False)
    except TemplateError as error:
        raise MosaError(f"the model's chat template cannot render this conversation: {error}") from None
    found = [rendered_markers.find(marker) for marker in markers]  # where each message's content lands
    for number, (message, place) in enumerate(zip(messages, found), start=1):
        if place < 0:
            raise MosaError(
                f"the model's chat template leaves out message {number} ({describe(message)}); "
                "it cannot render this conversation, so it is refused rather than altered"
            )
    for number in range(1, len(messages)):
        if found[number] < found[number - 1]:
            raise MosaError(
                f"the model's chat template puts message {number} ({describe(messages[number - 1])}) after message "
                f"{number + 1} ({describe(messages[number])}); it cannot render this conversation in order"
            )
    return text


def describe(message: dict) -> str:
    """A message in a few words, for error messages: its role and the start of its content."""
    return f"{message['role']}: {message['content'][:40]!r}"
