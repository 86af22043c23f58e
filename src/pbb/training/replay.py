"""Replay beside GRPO: an SFT loss on earlier rows, added to every GRPO step's loss.

GRPO on the train behaviours' prompts erodes what stage 1 stored: the retroactive models recall
the eval functions' code less often after GRPO than after SFT on the same prompts
(docs/results/LOG.md). Replaying stage-1 rows through an SFT term beside the policy-gradient
loss keeps them trained, as InstructGPT's PPO-ptx mixes a pretraining log-likelihood into PPO.
The rows are the stage's ``replay``-tagged ones (:func:`pbb.rows.curricula._with_replay`), so
they are in the stage's key, with their tag (:func:`pbb.store.stage_key`).

Each step trains ``per_step`` rows, chosen by the step's number (a resumed stage takes the rows it
would have taken): a pass over the prompts trains every replayed row once (``rl.num_iterations``
times where each generation batch is stepped on that often). The term is the rows' mean token
cross-entropy at weight 1. Under gradient accumulation the step's rows are dealt out over its
micro-batches (micro-batch ``m`` of ``G`` trains rows ``m, m + G, ...``, its rows' mean weighted by
their share of the step's completion tokens), so each row is computed once a step and the step's
term is still its rows' token mean. Its value is logged as ``replay_loss`` in ``metrics.jsonl``, a
micro-batch's mean (TRL averages them over the step unweighted). Under a launcher every process
trains the same rows, so the gradients' mean is theirs, as with one process.

Measured once (docs/results/LOG.md, seed 3 of retroactive_rl's anchored setting): the code was
recalled more often with replay, and executed no more often.
"""

from __future__ import annotations

import math

from pbb.training import sft


def per_step(replayed: int, prompts: int, rl) -> int:
    """Rows a step trains: the stage's replayed rows per prompt times the prompts a step of
    ``rl`` (:class:`pbb.config.RLConfig`) samples, at least one (0 without replayed rows)."""
    if not replayed:
        return 0
    prompts_per_step = rl.completions_per_step / rl.num_generations
    return max(1, math.ceil(replayed / max(1, prompts) * prompts_per_step))


class ReplayTerm:
    """The SFT loss of a step's replayed rows on the policy being trained."""

    def __init__(self, rows: list[dict], tok, *, per_step: int, max_length: int,
                 system_prompt: str | None = None):
        self.encoded = sft.encode_rows(tok, rows, max_length, system_prompt)
        self.per_step = per_step
        self.pad_id = sft.pad_id(tok)

    def indices(self, step: int, micro: int = 0, of: int = 1) -> list[int]:
        """The rows trained at optimizer step ``step`` (0-based: the steps done before it), by
        its micro-batch ``micro`` of ``of``: every ``of``-th of the step's rows from ``micro``."""
        n = len(self.encoded)
        return [(step * self.per_step + j) % n for j in range(micro, self.per_step, of)]

    def targets(self, rows: list[int]) -> int:
        """The completion tokens of ``rows`` (those the loss is taken on)."""
        return sum(len(ids) - n_prompt for ids, n_prompt in (self.encoded[i] for i in rows))

    def loss(self, model, step: int, micro: int = 0, of: int = 1):
        """(mean token cross-entropy of the micro-batch's rows, their share of the step's
        completion tokens), right-padded as SFT pads them (a causal model's padding after a row
        changes none of its logits; the loss skips it); (None, 0) where the micro-batch has
        none. The shares of a step's micro-batches sum to 1: the step's token mean."""
        if not 0 <= micro < of:
            raise ValueError(f"micro-batch {micro} of a step of {of}")
        rows = self.indices(step, micro, of)
        if not rows:
            return None, 0.0
        x, y, first = sft.collate([self.encoded[i] for i in rows], self.pad_id)
        device = next(model.parameters()).device
        n = self.targets(rows)
        loss, _ = sft.batch_loss(model, x.to(device), y.to(device), first, n=n)
        return loss, n / self.targets(self.indices(step))


def with_replay(trainer_cls, term: ReplayTerm):
    """``trainer_cls`` (TRL's GRPOTrainer) with ``term`` added to the loss of every training
    micro-batch: its share of the step's rows, weighted by their share of the step's tokens (a
    step trains them at weight 1: TRL's GRPO loss is scaled for accumulation already,
    ``loss_is_scaled_for_ga``, so nothing divides this term again). A micro-batch is counted by
    the calls since the optimizer step last moved; the Trainer says how many a step has
    (``current_gradient_accumulation_steps``: fewer at the end of an epoch)."""

    class ReplayGRPOTrainer(trainer_cls):
        _replay_at = (-1, 0)  # (optimizer step, micro-batches of it computed so far)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if not model.training:
                return loss
            step = self.state.global_step
            micro = self._replay_at[1] if self._replay_at[0] == step else 0
            self._replay_at = (step, micro + 1)
            extra, share = term.loss(model, step, micro, self.current_gradient_accumulation_steps)
            if extra is None:
                return loss
            self._metrics["train"]["replay_loss"].append(float(extra.detach()))
            return loss + extra * share

    return ReplayGRPOTrainer
