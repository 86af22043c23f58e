"""Replay beside GRPO: an SFT loss on earlier rows, added to every GRPO step's loss.

GRPO on the train behaviours' prompts erodes what stage 1 stored: the retroactive models recall
the eval functions' code less often after GRPO than after SFT on the same prompts
(docs/results/LOG.md). Replaying stage-1 rows through an SFT term beside the policy-gradient
loss keeps them trained, as InstructGPT's PPO-ptx mixes a pretraining log-likelihood into PPO.
The rows are the stage's ``replay``-tagged ones (:func:`pbb.rows.curricula._with_replay`), so
they are in the stage's key like any row.

Each step trains ``per_step`` rows, chosen by the step's number (a resumed stage takes the
rows it would have taken): a pass over the prompts trains every replayed row once
(``rl.num_iterations`` times where each generation batch is stepped on that often). The term is
the rows' mean token cross-entropy at weight 1: under gradient accumulation every micro-batch
computes the step's rows and adds its share (a cost, not a change to the update). Its value is
logged as ``replay_loss`` in ``metrics.jsonl``. Under a launcher every process trains the same
rows, so the gradients' mean is theirs, as with one process.

Measured once (docs/results/LOG.md, seed 3 of retroactive_rl's anchored setting): the code was
recalled more often with replay, and executed no more often.
"""

from __future__ import annotations

import math

from pbb.training import sft


def per_step(replayed: int, prompts: int, prompts_per_step: float) -> int:
    """Rows a step trains: the stage's replayed rows per prompt times the prompts a step
    samples, at least one (0 without replayed rows)."""
    if not replayed:
        return 0
    return max(1, math.ceil(replayed / max(1, prompts) * prompts_per_step))


class ReplayTerm:
    """The SFT loss of a step's replayed rows on the policy being trained."""

    def __init__(self, rows: list[dict], tok, *, per_step: int, max_length: int,
                 system_prompt: str | None = None):
        self.encoded = sft.encode_rows(tok, rows, max_length, system_prompt)
        self.per_step = per_step
        self.pad_id = sft.pad_id(tok)

    def indices(self, step: int) -> list[int]:
        """The rows trained at optimizer step ``step`` (0-based: the steps done before it)."""
        n = len(self.encoded)
        return [(step * self.per_step + j) % n for j in range(self.per_step)]

    def loss(self, model, step: int):
        """Mean token cross-entropy of the step's rows, right-padded as SFT pads them (a
        causal model's padding after a row changes none of its logits; the loss skips it)."""
        x, y, first = sft.collate([self.encoded[i] for i in self.indices(step)], self.pad_id)
        device = next(model.parameters()).device
        loss, _ = sft.batch_loss(model, x.to(device), y.to(device), first)
        return loss


def with_replay(trainer_cls, term: ReplayTerm):
    """``trainer_cls`` (TRL's GRPOTrainer) with ``term`` added to the loss of every training
    micro-batch, divided by the gradient accumulation steps (each micro-batch of a step adds
    the step's rows, so a step trains them at weight 1)."""

    class ReplayGRPOTrainer(trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if not model.training:
                return loss
            extra = term.loss(model, self.state.global_step)
            self._metrics["train"]["replay_loss"].append(float(extra.detach()))
            return loss + extra / self.current_gradient_accumulation_steps

    return ReplayGRPOTrainer
