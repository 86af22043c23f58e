"""A stage's trained weights, saved into its stage directory.

SFT stages train in :mod:`pbb.training.sft` (a plain loop), RL stages in
:mod:`pbb.training.grpo` (TRL's GRPOTrainer). Both use the stage directory of :mod:`pbb.store`
(its files, and how a stage is started, resumed from its last checkpoint and finished); what
is theirs alone is writing the model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pbb.store import MODEL


def save_model_atomic(model, tokenizer, stage_dir: Path, state_dict=None) -> Path:
    """Write ``stage_dir/model`` (full weights or a LoRA adapter) through a temporary sibling;
    ``state_dict``: the weights gathered from sharded processes, when the model holds a shard."""
    model_dir = Path(stage_dir) / MODEL
    tmp = Path(stage_dir) / f".{MODEL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)
    return model_dir
