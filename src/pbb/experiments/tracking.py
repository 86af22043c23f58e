"""Experiment tracking (``train.report_to``) through accelerate's trackers.

One tracker run per ``pbb run``, named after the run: every stage's ``metrics.jsonl`` line is
also logged there as it is written (``<stage dir>/loss``, ``<stage dir>/recall/recall``, the RL
rewards...), so stages, SFT and RL alike, sit side by side with their own step axes; at the
end the evaluation results (accuracy and interval bounds per curriculum, mode and split) follow
as ``eval/<curriculum>/<mode>/<split>/accuracy``. ``metrics.jsonl`` stays the record; a tracker
is a view. accelerate's tracker classes (``TensorBoardTracker``, ``WandBTracker``,
``TrackioTracker``) are used as they are, so each behaves as the field knows it.

The tracker packages are extras (``pip install 'pbb[tensorboard]'``, ``wandb``, ``trackio``);
asking for one that is not installed is one error before any work. TensorBoard event files go
to ``<run dir>/tensorboard/<run name>``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from pbb.errors import PbbError
from pbb.store import RunStore

#: name in ``train.report_to`` -> (accelerate tracker class, the package it needs)
TRACKERS = {"tensorboard": ("TensorBoardTracker", "tensorboard"),
            "wandb": ("WandBTracker", "wandb"),
            "trackio": ("TrackioTracker", "trackio")}


def check_trackers(names: list[str], where: str = "train.report_to") -> None:
    """Refuse an unknown tracker or one whose package is missing, before any work."""
    for name in names:
        if name not in TRACKERS:
            raise PbbError(f"{where}: unknown tracker {name!r}; known: {', '.join(TRACKERS)}")
        package = TRACKERS[name][1]
        if importlib.util.find_spec(package) is None:
            raise PbbError(f"{where}: {name} needs the {package} package "
                           f"(pip install 'pbb[{name}]')")


class Tracking:
    """The run's open trackers; ``log`` sends one record to all of them (a no-op with none)."""

    def __init__(self, names: list[str], run_name: str, run_dir: Path, config: dict | None = None):
        import accelerate.tracking as at

        check_trackers(names)
        self.trackers = []
        for name in names:
            cls = getattr(at, TRACKERS[name][0])
            tracker = (cls(run_name, str(RunStore(run_dir).tensorboard)) if name == "tensorboard"
                       else cls(run_name))
            tracker.start()
            if config and name != "tensorboard":  # tensorboard's hparams want flat scalars
                tracker.store_init_configuration(config)
            self.trackers.append(tracker)

    def log(self, values: dict, step: int | None = None) -> None:
        numbers = {k: v for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for tracker in self.trackers:
            tracker.log(numbers, step=step)

    def stage_logger(self, stage: str) -> Callable[[dict], None] | None:
        """A ``metrics.jsonl`` record -> tracker logger for one stage (None without trackers)."""
        if not self.trackers:
            return None

        def log(record: dict) -> None:
            self.log({f"{stage}/{k}": v for k, v in record.items() if k != "step"},
                     step=record.get("step"))

        return log

    def log_results(self, summary: dict) -> None:
        """The run's accuracies and intervals, one scalar each."""
        for r in summary.get("results", []):
            key = f"eval/{r['curriculum']}/{r['mode']}/{r['split']}"
            self.log({f"{key}/accuracy": r["accuracy"], f"{key}/ci_low": r["ci_low"],
                      f"{key}/ci_high": r["ci_high"]})

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
