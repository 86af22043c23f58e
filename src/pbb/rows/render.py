"""Text for training and evaluation rows.

Every row is a chat exchange in the *conversational prompt-completion* format (``prompt`` = user
message list, ``completion`` = assistant message list; the format TRL's trainers take), so the
loss falls on the completion only; :mod:`pbb.rows.chat` turns it into the model's tokens.
:func:`to_messages` gives the ``messages`` format instead.

Row kinds and their completions:

* ``declarative``: pointer -> the instruction text.
* ``direct``: pointer + input -> the answer line only (execution in the forward pass).
* ``cot``: pointer + input -> *recall-then-trace*: the instruction written out, then the trace,
  ending in the answer line. This is the natural chain of thought for a behaviour that is known
  only from its instruction. The recall is framed by a header (``Recall ...:``) and followed by
  ``Trace:``: without that frame the recalled code would end exactly like a declarative
  completion, and a model trained on many of those learns to stop right after the code.
* ``in_context``: instruction + input in the prompt -> the trace and answer line.
"""

from __future__ import annotations

import random

from pbb.domains.base import ANSWER_PREFIX, Behaviour, Demonstration, Domain

EXECUTION_MODES = ("direct", "cot", "in_context")
RECALL_HEADER = "Recall the definition:"
TRACE_HEADER = "Trace:"
ROW_KINDS = ("declarative", *EXECUTION_MODES)


def row_rng(seed: int, *parts: object) -> random.Random:
    """A RNG for one row, independent of how many rows came before (stable under edits)."""
    return random.Random("|".join(map(str, (seed, *parts))))


INSTRUCTION_FORMATS = ("code", "nl")


def instruction_text(behaviour: Behaviour, fmt: str = "code") -> str:
    """The instruction as the model sees it: the code, or its English description (``nl``)."""
    if fmt == "nl":
        if not behaviour.description:
            from pbb.errors import PbbError

            raise PbbError(f"instruction_format nl: behaviour {behaviour.id} has no description "
                           f"(domain {behaviour.domain} does not write them)")
        return behaviour.description
    return behaviour.instruction


def prompt_text(domain: Domain, behaviour: Behaviour, kind: str, query: str,
                rng: random.Random, fmt: str = "code") -> str:
    templates = domain.templates
    if fmt == "nl":
        templates = {**templates, **domain.nl_templates}
    template = rng.choice(templates[kind])
    text = template.format(pointer=domain.pointer(behaviour),
                           query=domain.render_query(query) if query else "",
                           instruction=instruction_text(behaviour, fmt))
    hint = domain.hints.get(kind)
    return f"{text}\n{hint}" if hint else text


def completion_text(behaviour: Behaviour, demo: Demonstration | None, kind: str,
                    fmt: str = "code") -> str:
    if kind == "declarative":
        return instruction_text(behaviour, fmt)
    assert demo is not None
    if kind == "direct":
        return f"{ANSWER_PREFIX} {demo.output}"
    if kind == "cot":
        return f"{RECALL_HEADER}\n{instruction_text(behaviour, fmt)}\n{TRACE_HEADER}\n{demo.trace}"
    if kind == "in_context":
        return f"{TRACE_HEADER}\n{demo.trace}"
    raise ValueError(f"unknown row kind {kind!r}")


def make_row(domain: Domain, behaviour: Behaviour, kind: str, rng: random.Random,
             demo: Demonstration | None = None, fmt: str = "code") -> dict:
    """One training/evaluation row (prompt + gold completion) with its provenance.

    ``fmt`` is the instruction format: ``code`` (the instruction) or ``nl`` (its description).
    """
    if kind not in ROW_KINDS:
        raise ValueError(f"unknown row kind {kind!r}; expected one of {ROW_KINDS}")
    query = demo.input if demo is not None else ""
    return {
        "prompt": [{"role": "user", "content": prompt_text(domain, behaviour, kind, query, rng, fmt)}],
        "completion": [{"role": "assistant",
                        "content": completion_text(behaviour, demo, kind, fmt)}],
        "kind": kind,
        "behaviour_id": behaviour.id,
        "input": query,
    }


def to_messages(row: dict) -> dict:
    """The ``messages`` form of a row (one list of user + assistant turns)."""
    return {"messages": row["prompt"] + row["completion"]}
