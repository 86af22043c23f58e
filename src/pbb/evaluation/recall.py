"""Recall: does the model reproduce an instruction from its pointer alone?

A run can fail at PBB in two places: the model never *memorised* an eval behaviour's instruction
(declarative training too short), or it recalls the instruction but cannot *execute* it. Recall
tells them apart, in two places:

* the evaluation mode ``recall``: a declarative prompt ("Show the source code of `zorp_17`"),
  scored 1.0 when the completion equals the instruction after whitespace normalisation;
* ``recall_exact`` on every CoT sample: the text between the CoT's ``Recall the definition:``
  header and its ``Trace:`` header (the recall-then-trace format of :mod:`pbb.rows.render`) against the
  instruction, normalised the same way.

Normalisation (:func:`normalize`) forgives only what carries no meaning: a Markdown code fence
around the text, trailing spaces, blank lines, runs of spaces inside a line. Indentation is kept
(it is Python's block structure), and so is every other character.
"""

from __future__ import annotations

import re

from pbb.rows.render import RECALL_HEADER, TRACE_HEADER

_FENCE = re.compile(r"^\s*```[\w+-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)
_INNER_SPACE = re.compile(r"(?<=\S)[ \t]+")


def normalize(text: str) -> str:
    """Whitespace-normalised text: fence removed, blank lines and trailing/inner runs dropped."""
    text = text or ""
    m = _FENCE.match(text.strip())
    if m:
        text = m.group(1)
    lines = []
    for line in text.splitlines():
        line = line.rstrip().expandtabs(4)
        if line:
            indent = len(line) - len(line.lstrip(" "))
            lines.append(" " * indent + _INNER_SPACE.sub(" ", line.lstrip(" ")))
    return "\n".join(lines)


def recall_score(completion: str, instruction: str) -> float:
    """1.0 when ``completion`` is the instruction up to whitespace, else 0.0."""
    return float(normalize(completion) == normalize(instruction))


def recalled_text(cot_completion: str) -> str | None:
    """The recalled instruction inside a CoT completion, or None when it has no recall header."""
    text = cot_completion or ""
    start = text.find(RECALL_HEADER)
    if start < 0:
        return None
    rest = text[start + len(RECALL_HEADER):]
    end = rest.find(f"\n{TRACE_HEADER}")
    return rest if end < 0 else rest[:end]


def cot_recall_exact(cot_completion: str, instruction: str) -> float:
    """``recall_exact`` of a CoT sample: its recalled part equals the instruction."""
    recalled = recalled_text(cot_completion)
    return 0.0 if recalled is None else recall_score(recalled, instruction)
