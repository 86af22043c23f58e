"""From a completion to a score: extraction, the domain's verifier, recall.

:func:`score_completion` is the one path from a model completion to a score. Evaluation (through
:class:`Scorer`), ``pbb score``, the lm-eval export and the RL ``correct`` reward
(:mod:`pbb.training.rewards`) all call it, so a reward and a metric can never disagree and a
rate means the same whichever generator produced the text. It lives in evaluation, below
training, so that scoring needs nothing of the training stack.
"""

from __future__ import annotations

from pbb.data import DataSet
from pbb.domains.base import Behaviour, Domain
from pbb.evaluation.recall import cot_recall_exact, normalize, recall_score
from pbb.rows.render import instruction_text


def score_completion(domain: Domain, behaviour: Behaviour, query: str,
                     completion: str) -> tuple[str | None, float]:
    """(extracted prediction, verifier score) of one completion for one query."""
    prediction = domain.extract(completion)
    return prediction, float(domain.score(behaviour, query, prediction))


class Scorer:
    """Completion -> sample record for one (curriculum, mode): extraction, the domain's verifier,
    recall. Shared by local evaluation and ``pbb score`` (completions produced elsewhere), so a
    rate means the same whichever produced the text."""

    def __init__(self, ds: DataSet, curriculum: str, mode: str, fmt: str = "code"):
        self.ds, self.curriculum, self.mode, self.fmt = ds, curriculum, mode, fmt
        self.behaviours = {b.id: b for b in ds.behaviours}
        self.extra = ds.domain.sample_fields if ds.domain.sample_metrics else None  # validity...
        self.train_out = {k: [d.output for d in v] for k, v in ds.by_behaviour("train").items()}
        self.test_out = {k: [d.output for d in v] for k, v in ds.by_behaviour("test").items()}

    def __call__(self, q: dict, completion: str) -> dict:
        b, mode = self.behaviours[q["behaviour_id"]], self.mode
        rec = {"behaviour_id": q["behaviour_id"], "split": q["split"], "curriculum": self.curriculum,
               "mode": mode, "input": q["input"], "prompt": q["prompt"], "completion": completion}
        if mode == "recall":
            return {**rec, "prediction": normalize(completion), "target": q["target"],
                    "score": recall_score(completion, q["target"])}
        prediction, score = score_completion(self.ds.domain, b, q["input"], completion)
        rec.update(prediction=prediction, target=q["target"], score=score)
        if mode == "cot":
            rec["recall_exact"] = cot_recall_exact(completion, instruction_text(b, self.fmt))
        if self.extra:
            rec.update(self.extra(b, q["input"], prediction, self.train_out[q["behaviour_id"]],
                                  self.test_out[q["behaviour_id"]]))
        return rec
