"""Chat text: the default system block is found from the template itself, and only removed."""

import copy

import pytest

from pbb.models import load_tokenizer, resolve_model_path
from pbb.rows.chat import default_system_block, prompt_text, render

PLAIN_CHATML = (  # a ChatML template that injects nothing when there is no system message
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(resolve_model_path("tiny-random"))


def test_smollm2_default_system_prompt_is_found_and_cut(tok):
    block = default_system_block(tok)
    assert block.startswith("<|im_start|>system\n") and "SmolLM" in block
    text = render(tok, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    assert text == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"


def test_a_template_without_a_default_is_left_alone(tok):
    other = copy.deepcopy(tok)
    other.chat_template = PLAIN_CHATML
    if hasattr(other, "_pbb_default_system_block"):
        del other._pbb_default_system_block
    assert default_system_block(other) is None
    msgs = [{"role": "user", "content": "q"}]
    assert render(other, msgs, add_generation_prompt=True) == other.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True)


def test_a_configured_system_prompt_replaces_the_default(tok):
    text = prompt_text(tok, "q", "Answer tersely.")
    assert text.startswith("<|im_start|>system\nAnswer tersely.<|im_end|>\n")
    assert "SmolLM" not in text
