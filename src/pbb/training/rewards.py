"""RL rewards, made from the domain's verifier: the very function evaluation scores with.

:func:`pbb.evaluation.scoring.score_completion` is the one path from a model completion to a
score; evaluation and the ``correct`` reward both call it, so a reward and a metric can never
disagree. The optional ``format`` reward is 1.0 when an answer line can be extracted at all — a
weak signal that keeps a small model's rollouts parseable while correctness is still rare.

The reward functions follow TRL's calling convention: keyword arguments ``completions`` (lists
of assistant messages, for conversational prompts) plus the dataset's extra columns
(``behaviour_id``, ``input``), one entry per completion; they return one float per completion.
TRL logs each under ``rewards/<function name>/mean`` and their weighted sum as ``reward``.
"""

from __future__ import annotations

from collections.abc import Callable

from pbb.data import DataSet
from pbb.evaluation.scoring import score_completion


def completion_as_text(completion: object) -> str:
    """The text of a completion, whether a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    return ""


def reward_functions(ds: DataSet, format_weight: float = 0.0) -> tuple[list[Callable], list[float]]:
    """The reward functions of an RL stage on ``ds``, and their weights for TRL."""
    behaviours = {b.id: b for b in ds.behaviours}
    domain = ds.domain

    def correct(completions, behaviour_id, input, **_) -> list[float]:
        return [score_completion(domain, behaviours[b], q, completion_as_text(c))[1]
                for c, b, q in zip(completions, behaviour_id, input, strict=True)]

    def format(completions, **_) -> list[float]:
        return [float(domain.extract(completion_as_text(c)) is not None) for c in completions]

    funcs, weights = [correct], [1.0]
    if format_weight > 0:
        funcs.append(format)
        weights.append(format_weight)
    return funcs, weights
