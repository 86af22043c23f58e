"""Chat text and tokens exactly as the model sees them, in training and in evaluation alike.

Why this exists: many chat templates add a *default system prompt* when the conversation has
none (SmolLM2's adds "You are a helpful AI assistant named SmolLM, trained by Hugging Face", ~20
tokens, to every row). For PBB rows of ~50 tokens that is a third of all compute spent on text
that carries nothing. pbb therefore renders conversations with **no system block** unless the
config asks for one (``chat.system_prompt``); a template that injects a default gets that block
cut out again. The block is found from the template itself (no per-model table): render a user
turn with and without an explicit system message and compare (:func:`default_system_block`).

Training rows are encoded as *prompt tokens + completion tokens* (:func:`encode_row`), the
prompt rendered with the generation prompt exactly as at evaluation time, so the model is trained
on the very token sequence it continues at test time. The loss falls on the completion tokens.
"""

from __future__ import annotations

import weakref

_SYS, _USR = "\ue000pbb-system\ue000", "\ue001pbb-user\ue001"


def _template(tok, messages: list[dict], add_generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False,
                                   add_generation_prompt=add_generation_prompt)


def _templates(tok, conversations: list[list[dict]], add_generation_prompt: bool) -> list[str]:
    """:func:`_template` of many conversations in one call (the template's set-up once)."""
    if not conversations:
        return []
    return tok.apply_chat_template(conversations, tokenize=False,
                                   add_generation_prompt=add_generation_prompt)


def _find_default_block(tok) -> str | None:
    try:
        plain = _template(tok, [{"role": "user", "content": _USR}], False)
        with_sys = _template(tok, [{"role": "system", "content": _SYS},
                                   {"role": "user", "content": _USR}], False)
    except Exception:  # noqa: BLE001 - a template without system support: nothing to cut
        return None
    head = plain[:plain.index(_USR)]
    if _SYS not in with_sys:
        return None
    sys_head = with_sys[:with_sys.index(_USR)]
    pre, post = sys_head.split(_SYS, 1)
    if not (head.startswith(pre) and head.endswith(post)) or len(head) <= len(pre) + len(post):
        return None  # no default injected: the user turn follows the start directly
    # head = pre + DEFAULT + system close + user header. The user header is the system header
    # with the role renamed (true of ChatML and of header-token templates); without it the
    # block cannot be cut safely, and None keeps the template's own text.
    user_header, keep = pre.replace("system", "user"), 0
    bos = tok.bos_token or ""
    if not post.endswith(user_header) and bos and user_header.startswith(bos):
        user_header, keep = user_header[len(bos):], len(bos)  # a BOS before the system block
    if not post.endswith(user_header):
        return None
    block = head[keep:len(head) - len(user_header)]
    return block or None


#: tokenizer -> its default system block, found once per tokenizer (every row is rendered with
#: it); weak keys, so a tokenizer is not kept alive by the cache nor changed by it
_DEFAULT_BLOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def default_system_block(tok) -> str | None:
    """The text a chat template adds when a conversation has no system message, or None."""
    try:
        return _DEFAULT_BLOCKS[tok]
    except KeyError:
        block = _DEFAULT_BLOCKS[tok] = _find_default_block(tok)
        return block
    except TypeError:  # a tokenizer that takes no weak reference: found again each time
        return _find_default_block(tok)


def render(tok, messages: list[dict], *, system_prompt: str | None = None,
           add_generation_prompt: bool = False) -> str:
    """A conversation as text: with ``system_prompt`` if given, else with no system block."""
    return render_many(tok, [messages], system_prompt=system_prompt,
                       add_generation_prompt=add_generation_prompt)[0]


def render_many(tok, conversations: list[list[dict]], *, system_prompt: str | None = None,
                add_generation_prompt: bool = False) -> list[str]:
    """:func:`render` of many conversations at once (a stage's rows: one template call)."""
    if system_prompt:
        system = [{"role": "system", "content": system_prompt}]
        return _templates(tok, [system + m for m in conversations], add_generation_prompt)
    texts = _templates(tok, conversations, add_generation_prompt)
    block = default_system_block(tok)
    if block:
        texts = [t.replace(block, "", 1) for t in texts]
    return texts


def prompt_text(tok, prompt: str, system_prompt: str | None = None) -> str:
    """A user prompt ready for generation (the assistant turn opened)."""
    return render(tok, [{"role": "user", "content": prompt}], system_prompt=system_prompt,
                  add_generation_prompt=True)


def encode_row(tok, row: dict, system_prompt: str | None = None) -> tuple[list[int], int]:
    """(token ids, number of prompt tokens) of a prompt-completion row.

    The ids after the first ``n_prompt`` are the completion (its text and the end-of-turn
    token): the tokens the loss falls on.
    """
    return encode_rows(tok, [row], system_prompt)[0]


def encode_rows(tok, rows: list[dict], system_prompt: str | None = None,
                ) -> list[tuple[list[int], int]]:
    """:func:`encode_row` of every row, rendered and tokenized as one batch each (row by row,
    the template's set-up and the tokenizer's call were paid per row: a GPU claims plan
    tokenizes every stage it plans). The same ids as row by row: the batch is not padded."""
    if not rows:
        return []
    prompts = render_many(tok, [r["prompt"] for r in rows], system_prompt=system_prompt,
                          add_generation_prompt=True)
    fulls = render_many(tok, [r["prompt"] + r["completion"] for r in rows],
                        system_prompt=system_prompt)
    for prompt, full in zip(prompts, fulls, strict=True):
        if not full.startswith(prompt):
            raise ValueError("chat template renders the prompt differently with a completion; "
                             "cannot locate the completion")
    p_ids = tok(prompts, add_special_tokens=False).input_ids
    c_ids = tok([f[len(p):] for p, f in zip(prompts, fulls, strict=True)],
                add_special_tokens=False).input_ids
    return [(p + c, len(p)) for p, c in zip(p_ids, c_ids, strict=True)]


TRAINED_OPEN, TRAINED_CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧ around the tokens the loss falls on


def tokenized_view(tok, row: dict, system_prompt: str | None = None) -> dict:
    """A row as the model sees it: the text with the trained (loss) tokens between ⟦ ⟧, and counts.

    Built from :func:`encode_row`, the function training uses, so the marked span is exactly
    the trained tokens.
    """
    ids, n_prompt = encode_row(tok, row, system_prompt)
    text = (tok.decode(ids[:n_prompt]) + TRAINED_OPEN + tok.decode(ids[n_prompt:])
            + TRAINED_CLOSE)
    return {"text": text, "prompt_tokens": n_prompt, "completion_tokens": len(ids) - n_prompt,
            "tokens": len(ids)}
