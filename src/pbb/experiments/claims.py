"""``pbb claims``: each claim of the paper measured by one sweep, and one table of verdicts.

A claim (:data:`CLAIMS`) is a statement of the paper with the comparisons that test it: two
conditions (a curriculum in an eval mode, on the sweep points a ``where`` selects, of the
claim's sweep or of another claim's that ran it on the same data sets), the split, and the
direction the paper reports. Its sweep config is ``<configs>/<name>.yaml``
(``configs/claims/`` sized for a 2-core CPU, ``configs/gpu/claims/`` for the GPU twins). The
claims' sweeps share one stage store, so claims whose settings agree train those stages once::

    OUT/<claim>/    the claim's sweep directory (pbb.experiments.sweep)
    OUT/stages/     the stages of every claim's runs

Every figure of the table comes from the runs' ``samples.jsonl``:

* a condition's accuracy: the mean over its runs (one a seed) of the mean over behaviours;
* a paired difference: over the (seed, behaviour) pairs both conditions were evaluated on (runs
  of the same data set), the mean of the differences of their per-behaviour accuracies, with
  a percentile bootstrap interval that draws seeds and then behaviours within each
  (:func:`pbb.evaluation.metrics.grouped_ci`: a verdict should survive another seed, so the
  interval carries the spread between seeds); per seed, each seed's mean difference;
* the crossover N: the sample-efficiency estimate of :mod:`pbb.experiments.efficiency`.

Verdicts are earned: **reproduced** only where the interval excludes 0 in the paper's direction
(for N: excludes 1, one instruction worth more than one demonstration); **not reproduced** where
it excludes 0 the other way or includes it; **not testable at this size** where the claim's
prerequisite fails (its measured figure is shown); **not run** where no run measured it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path

from rich.console import Console

from pbb.errors import PbbError
from pbb.evaluation.metrics import gap_ci, grouped_ci, per_behaviour_field
from pbb.experiments import claims_archive as archive
from pbb.experiments.claims_report import (
    NOT_REPRODUCED,
    NOT_RUN,
    NOT_TESTABLE,
    REPRODUCED,
    check_doc,
    write,
)
from pbb.experiments.sweep import of_plan, read_record, started
from pbb.records import read_samples, read_summary
from pbb.store import STAGES, RunStore, SweepStore, read_jobs

console = Console(stderr=True, soft_wrap=True)  # a message is one line in a log file

#: (configs, claims directory, table) of the CPU configs and of their GPU twins
CPU = (Path("configs/claims"), Path("runs/claims"), Path("docs/claims.md"))
GPU = (Path("configs/gpu/claims"), Path("runs/claims-gpu"), Path("docs/claims-gpu.md"))
#: resamples of every interval (seeded: the table is the same bytes each time it is written)
RESAMPLES = 1000


@dataclass(frozen=True)
class Condition:
    """One side of a comparison: ``curriculum`` in eval ``mode``, on the sweep points whose
    config has every ``where`` value (dotted keys), which ``setting`` names in the table;
    ``field``: the per-sample figure averaged (``score``, or the grammars' ``chance``: the
    validity of random strings, per behaviour). ``claim``: the points are another claim's, whose
    runs of the same data sets pair with this claim's (seed and data digest,
    :attr:`Point.data_key`): a condition both claims need is run once, not again with each."""

    curriculum: str
    mode: str = "cot"
    where: tuple[tuple[str, object], ...] = ()
    setting: str = ""
    field: str = "score"
    claim: str | None = None

    @property
    def label(self) -> str:
        return self.short + (f" ({self.setting})" if self.setting else "")

    @property
    def short(self) -> str:
        """The label without the setting."""
        text = f"{self.curriculum} {self.mode}"
        return text if self.field == "score" else f"{text}, {self.field}"


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on ``split`` behaviours (``only``: ``composites``, the behaviours
    composed of two others); ``direction`` +1: the paper reports ``a`` above ``b``. ``each``:
    (dotted key, unit): one row for each value the claim's config gives that key. ``against``:
    another claim, whose runs of the same two conditions (other functions) give the same paired
    difference there; the row's figure is then the gap, the difference here minus there, and
    ``direction`` is the gap's (-1: the paper reports it smaller here)."""

    a: Condition
    b: Condition
    paper: str
    split: str = "eval"
    only: str | None = None
    direction: int = 1
    each: tuple[str, str] | None = None
    against: str | None = None

    @property
    def other(self) -> str | None:
        """The other claim whose runs the row rests on: ``against``, or a condition's ``claim``."""
        return self.against or self.a.claim or self.b.claim

    def run_by(self, claim: str | None) -> tuple[Condition, ...]:
        """The conditions whose runs the sweep of ``claim`` gives the row (None: the row's own
        claim): both in either claim of a gap row; otherwise each in its condition's claim."""
        if self.against is not None:
            return self.a, self.b
        return tuple(c for c in (self.a, self.b) if c.claim == claim)


@dataclass(frozen=True)
class Prerequisite:
    """What the comparison needs to mean anything: ``condition``'s accuracy on ``split``
    behaviours at least ``at_least``; below it the claim is not testable at this size."""

    condition: Condition
    at_least: float
    what: str
    split: str = "train"


@dataclass(frozen=True)
class Crossover:
    """"One instruction is worth N demonstrations": ``demos`` runs at k demonstrations per eval
    behaviour against ``instruction`` runs (the analysis of ``pbb sweep``)."""

    paper: str
    instruction: str = "proactive"
    demos: str = "demos_only"
    mode: str = "cot"


@dataclass(frozen=True)
class Claim:
    name: str
    title: str
    statement: str
    paper: str  # the paper's figure, "(secondary source, unverified)" where our notes say so
    comparisons: tuple[Comparison, ...] = ()
    prerequisite: Prerequisite | None = None
    crossover: Crossover | None = None
    note: str = ""


C = Condition
#: the cap on stage 2's epochs (its stopping rule: every eval instruction recalled)
STAGE2_EPOCHS = "train.stages.stage2.max_epochs"
SECONDARY = "(secondary source, unverified)"
NO_FIGURE = "no figure in our notes of the paper"
#: retroactive_rl's GRPO stage: up to one pass over the prompts in groups of 4 completions (its
#: first point; 24 steps on the CPU, 48 of the 80 prompts, 100 on the GPU twin, one pass), or two
#: (its second point: 80 steps on the CPU, 200 on the GPU twin) without a KL term, or the same
#: two with one to the warm start (its third point), or one pass in groups of 8 with as many
#: completions as two passes in 4 (its fourth point: 80 steps of one prompt on the CPU, 200 of
#: two on the GPU twin)
ONE_PASS = (("rl.epochs", 1), ("rl.num_generations", 4))
TWO_PASSES = (("rl.epochs", 2), ("rl.beta", 0.0))
ANCHORED = (("rl.epochs", 2), ("rl.beta", 0.04))
GROUPS_OF_8 = (("rl.num_generations", 8),)
#: the two settings of curricula_vs_mixture, told apart by their points' curricula
PROACTIVE_SETTING = dict(where=(("curricula", ["proactive", "mixture"]),),
                         setting="proactive_vs_control's functions")
RETROACTIVE_SETTING = dict(where=(("curricula", ["retroactive", "mixture"]),),
                           setting="retroactive_rl's functions")

#: the claims, in the order of the table; ``name`` is also the stem of the sweep config
CLAIMS: tuple[Claim, ...] = (
    Claim("proactive_vs_control", "Proactive PBB executes functions known only from their code",
          "A model trained on the code and demonstrations of some functions, then on the code "
          "alone of others, executes the others on fresh inputs; the same model before it saw "
          "their code (stage 1 only) and the untuned model do not.",
          f"Qwen3-14B on random arithmetic: about 37% on eval functions with the full proactive "
          f"curriculum, near 0% with either stage alone or untuned {SECONDARY}.",
          (Comparison(C("proactive"), C("stage1_only"), "above (near 0% for stage 1 alone)"),
           Comparison(C("proactive"), C("untuned"), "above (near 0% untuned)"))),
    Claim("curricula_vs_mixture", "Both PBB curricula beat the homogeneous mixture",
          "Proactive and retroactive PBB execute instruction-only functions better than one "
          "shuffled stage of the same rows.",
          f"The curricula beat a homogeneous mixture of the same data ({NO_FIGURE}).",
          (Comparison(C("proactive", **PROACTIVE_SETTING), C("mixture", **PROACTIVE_SETTING),
                      "above"),
           Comparison(C("retroactive", **RETROACTIVE_SETTING),
                      C("mixture", **RETROACTIVE_SETTING), "above"),
           Comparison(C("retroactive", where=ONE_PASS, claim="retroactive_rl",
                        setting="retroactive_rl's runs: warm start on every train "
                                "demonstration"),
                      C("mixture", **RETROACTIVE_SETTING), "above")),
          note="Proactive on the functions of proactive_vs_control, its stage 2 replaying 50% "
               "stage-1 rows (25% there; its stage 1 shared), retroactive on those of "
               "retroactive_rl with the one-demonstration warm start that claim had until "
               "2026-12-04, each with its own mixture. With 25% replay, "
               "measured at seeds 0-4 (the eval functions' CoT samples, "
               "docs/results/LOG.md): the proactive model recalls the eval function's code "
               "exactly in 87% of its completions (235 of 270) and is right in 45% of those; "
               "the mixture recalls it in 46% (124; 22-74% by seed) and is right in 62% of "
               "those: stage 2, the eval functions' code trained last until all are recalled, "
               "wins on recall and loses on executing what is recalled, and which weighs more "
               "changes with the seed. The retroactive setting's mixture (SFT on the same rows, "
               "no RL) recalls in 64% and is right in 54% of those, GRPO's model in 53% and 41%: "
               "as in retroactive_rl, SFT on the rows is above 24 GRPO steps at this size. "
               "With 50% replay (pbb sweep of this config's first point at seeds 0-4, "
               "docs/results/LOG.md): proactive 46.3% against the mixture's 33.3%, +13.0 [+4.1, "
               "+23.3], above at every seed; the proactive model executes 50% of the eval code "
               "it recalls (45% with 25%). The second row is the one-demonstration warm start's "
               "runs; the third sets retroactive_rl's runs, with the warm start that claim has "
               "now (every train demonstration: the rows this mixture trains on), against the "
               "same mixture: they share its data sets, so they pair function by function "
               "without running the retroactive curriculum again here."),
    Claim("retroactive_rl", "Retroactive PBB: RL on train functions activates the stored eval "
          "functions",
          "After a stage of all functions' code, RL on executing the train functions makes the "
          "model execute the eval functions (beyond what the same RL does without the code), "
          "and does so better than SFT on the same prompts.",
          f"Stage 2 by RL with a correctness reward is reported better than by SFT (RL reported "
          f"as GRPO {SECONDARY}); the RL-alone control is the reviewers' request ({NO_FIGURE}).",
          (Comparison(C("retroactive", where=ONE_PASS), C("rl_only"),
                      "above (the reviewers' control)"),
           Comparison(C("retroactive", where=ONE_PASS), C("retroactive_sft"),
                      "above (RL reported better)"),
           Comparison(C("retroactive", where=TWO_PASSES, setting="GRPO twice as long or more"),
                      C("retroactive_sft"), "above (RL reported better)"),
           Comparison(C("retroactive", where=ANCHORED,
                        setting="GRPO twice as long or more, a KL term to its warm start"),
                      C("retroactive_sft"), "above (RL reported better)"),
           Comparison(C("retroactive", where=GROUPS_OF_8,
                        setting="GRPO in groups of 8 a prompt, as many completions as two "
                                "passes"),
                      C("retroactive_sft"), "above (RL reported better)")),
          note="The warm start is SFT on every demonstration of the train functions "
               "(curriculum.rl_warmup_demos 4 = data.demos, the rows retroactive_sft trains), so "
               "retroactive - retroactive_sft is what GRPO's 24 steps add to SFT on the same "
               "demonstrations. Measured at seeds 0-4 (docs/results/LOG.md): the retroactive "
               "model recalls the eval function's code exactly in 17-28 of 40 completions, SFT's "
               "in 20-28, RL alone in none. With a one-demonstration warm start (until "
               "2026-12-04), at seeds "
               "0-4 (docs/results/LOG.md): retroactive - rl_only +18.0 [+5.0, +31.0], "
               "retroactive - retroactive_sft -9.0 [-20.0, +3.0]; RL alone reached 0-17.5% with "
               "no code ever seen (it recalls none; small output ranges), the retroactive model "
               "recalled the eval function's code exactly in 9-27 of 40 completions and was "
               "right in 25-50% of those, SFT on the same prompts in 20-28 of 40 and 40-54%. "
               "The third row gives GRPO two passes over the prompts (80 steps here, 200 on the "
               "GPU twin; the retroactive curriculum only, against the first point's SFT): "
               "whether RL's shortfall against SFT is its budget at this size. Measured at "
               "seeds 0-4 (2026-12-06, docs/results/LOG.md): it is not; the 80-step model is "
               "below the 24-step one at 4 of 5 seeds (30.0% against 39.0% on the eval "
               "functions) while its train functions' held-out inputs rose (66% against 58%, "
               "10 samples a seed); it recalled the eval code as often (117 of 200 completions "
               "exactly, against 123) and was right in fewer of them (47% against 51%) and of "
               "the rest (5 of 83 against 15 of 77). The fourth row holds those passes near the "
               "warm start by a KL term (rl.beta 0.04): whether an anchor keeps what GRPO adds "
               "over SFT. At seeds 0-4 (2026-12-07, docs/results/LOG.md) it binds little: the "
               "policy's KL to the warm start stays at 0.011-0.020 on average (0.11 at most); "
               "the model lands at or above the unanchored one at 4 of 5 seeds (30.0%, 35.0%, "
               "32.5%, 35.0% and 45.0%, against 30.0%, 37.5%, 27.5%, 30.0% and 25.0%), not "
               "above SFT on the mean (35.5% against 36.5%; above it at seed 4 alone); and "
               "51-63% of GRPO's groups (4 completions a prompt) get one reward for all their "
               "completions, no "
               "signal, as in every GRPO run of this claim in groups of 4 (40-67%). "
               "The fifth row samples 8 completions a prompt (one prompt a step on the CPU, two "
               "on the GPU twin; one pass, as many completions as the third row's two): at "
               "seeds 0-4 (2026-12-07, docs/results/LOG.md) 54-60% of its completions got a "
               "correctness signal (their group not all right or all wrong) against 44% in "
               "the anchored point's groups of 4 at seed 0 (on the whole reward, format "
               "included, 35-43% of its groups had none against 51-63%), and the model lands "
               "near SFT (30.0%, 37.5%, 32.5%, 37.5% and 40.0%, against 30.0%, 37.5%, 35.0%, "
               "42.5% and 37.5%): more completions with a signal have not lifted GRPO above "
               "SFT on the same rows. At five seeds the four GRPO rows' intervals bound any gain "
               "of GRPO over SFT on these rows at this size by their upper ends (+12.5, +1.5, "
               "+7.5 and +5.0 points). A trial of stage 1's rows replayed beside GRPO (curriculum."
               "activation_replay 0.5: an SFT term on them in every step; seed 3 with the fourth "
               "row's settings, 2026-12-07, docs/results/LOG.md): the model recalled the eval "
               "code exactly in 37 of 40 completions, against 30 without, and executed no more "
               "of it (32.5% against 35.0%; SFT with the same replay 35.0%): recall is not what "
               "holds GRPO back here."),
    Claim("cot_vs_direct", "Chain of thought beats direct answers",
          "The same proactive model executes instruction-only functions better when it recalls "
          "and traces them than when it answers at once.",
          f"CoT beats direct answers {SECONDARY}.",
          (Comparison(C("proactive"), C("proactive", "direct"), "above"),),
          note="Stage 1 trains direct and CoT demonstrations alike (demo_modes: [direct, cot])."),
    Claim("in_context_vs_pbb", "In context beats PBB",
          "A model given the instruction in its prompt executes it better than a PBB model "
          "recalling it from its weights.",
          f"In-context execution (the instruction in the prompt) is an upper bound that beats "
          f"PBB {SECONDARY}.",
          (Comparison(C("stage1_only", "in_context"), C("proactive"),
                      "above (the stage-1 model with the code in its prompt)"),
           Comparison(C("proactive", "in_context"), C("proactive"),
                      "above (the PBB model itself, with the code in its prompt)")),
          note="Why in-context is low here, measured at seeds 0-2 (python -m "
               "pbb.evaluation.steps; docs/results/LOG.md, the claims table): no model "
               "trained on in-context rows, and on an in-context prompt the stage-1 model "
               "often copies the code from its prompt and ends its turn, as its declarative "
               "rows taught it (52% of eval completions at seed 1, 4% at seed 2, 0% at seed 0): "
               "its first trace line is missing in 11% / 89% / 63% of them. Where it does "
               "trace, it is right in 50-71% of queries (seeds 0 and 2), above proactive CoT. The "
               "archived runs (2026-12-04, trained anew) show the same: its first trace line "
               "missing in 15 / 89 / 61 / 31 / 37% of its completions at seeds 0-4, no answer "
               "line in 63% at seed 1, right in 72% at seed 0 and 9% at seed 1."),
    Claim("in_context_trained", "In context beats PBB, with in-context execution trained",
          "A model trained to execute code given in its prompt (stage 1's rows plus in-context "
          "demonstrations of the train functions) executes the eval functions from their code "
          "in its prompt better than a PBB model recalling that code from its weights.",
          f"In-context execution (the instruction in the prompt) is an upper bound that beats "
          f"PBB {SECONDARY}; the paper's models were instruction-tuned at 1B+ parameters.",
          (Comparison(C("in_context_trained", "in_context"), C("proactive"),
                      "above (the upper bound, its prompt format trained)"),),
          note="The fair form of in_context_vs_pbb's question at this size: there no model "
               "trained on a row with code in its prompt, and the stage-1 model often copies "
               "the code and stops."),
    Claim("code_vs_nl", "Code beats a natural-language description",
          "Functions known only from their source code are executed better than the same "
          "functions known only from an English description that says exactly the same.",
          f"Code worked better than a natural-language description of the same behaviour "
          f"({NO_FIGURE}).",
          tuple(Comparison(C("proactive", where=(("data.instruction_format", "code"),
                                                 (STAGE2_EPOCHS, n)), setting=f"code{more}"),
                           C("proactive", where=(("data.instruction_format", "nl"),
                                                 (STAGE2_EPOCHS, n)), setting=f"nl{more}"),
                           "above")
                for n, more in ((4, ""), (8, ", stage 2 up to 8 epochs"))),
          note="Stage 2 trains until every eval function's instruction is recalled, at most 4 "
               "epochs (first row); measured at seeds 0-4 (docs/results/LOG.md), the eval code "
               "was then recalled at 100 / 89 / 89 / 89 / 100%, the descriptions at 83 / 72 / "
               "100 / 89 / 83%, and each seed's difference follows that gap: at seed 2, the "
               "descriptions recalled fully, the description did better (42.6 against 38.9%). "
               "Code is learned faster here. Given up to 8 epochs (second row), stage 2 "
               "recalled both fully at every seed (the code after 4-6 epochs, the descriptions "
               "after 4-7), and neither was executed better: 40.0 against 40.4%, the seeds on "
               "both sides of 0, the eval code recalled in 89% of the CoTs, the descriptions in "
               "94%."),
    Claim("composition", "PBB composes learned functions",
          "A function defined only as the composition of two learned functions (h(a) = "
          "f(g(a)), its code naming f and g by their pointers) is executed from its code.",
          f"A new function defined as a composition of two learned ones ({NO_FIGURE}).",
          (Comparison(C("proactive"), C("stage1_only"), "above", only="composites"),),
          note="The composites' CoT recalls and traces each part in turn (composite_trace: "
               "nested). With each part evaluated in one line (calls, `g(7) = 2`, a direct "
               "evaluation no demonstration trains) proactive and the control were 13.5% and "
               "8.0% at 3 seeds (+5.5 [-3.8, +14.3]), that line right in about a third of the "
               "eval composites (docs/results/LOG.md, the claims table)."),
    Claim("crossover", "One instruction is worth N demonstrations",
          "Eval functions learned from k demonstrations each reach the accuracy that one "
          "instruction gives at some N, with an interval.",
          "One instruction can substitute for up to ~100 execution examples (the title: \"An "
          "Instruction is Worth 100 Examples\").",
          crossover=Crossover("N above 1; up to ~100"),
          note="Measured at seeds 0-2 (eval functions' CoT, 20 a seed): one instruction 55.0 / "
               "52.5 / 30.0%, demos_only at k = 1 / 3 / 10 / 30: 7.5 / 20.0 / 82.5 / 95.0%, "
               "5.0 / 12.5 / 85.0 / 90.0%, 10.0 / 10.0 / 72.5 / 92.5%: every seed crosses "
               "between k = 3 and 10, so N is bounded on both sides at every seed. Far from the "
               "paper's ~100: at this size k = 10 CoT demonstrations of a function already "
               "teach it better than its code recalled and traced."),
    Claim("scaling", "PBB at every number of train functions",
          "Proactive PBB beats the stage-1-only control with few and with many train functions.",
          f"100-800 behaviours per experiment; the reviewers asked how PBB scales with their "
          f"number ({NO_FIGURE}).",
          (Comparison(C("proactive"), C("stage1_only"), "above at every size",
                      each=("data.behaviours", "functions")),),
          note="The trend across sizes is read from the rows (different functions: unpaired). "
               "Measured at seeds 0-2 (the eval functions' CoT samples, docs/results/LOG.md): "
               "proactive recalls the eval code exactly about as often at every size (86% / 85% "
               "/ 93% at 40 / 72 / 120 functions) and executes what it recalls better the more "
               "train functions it traced in stage 1 (30 / 54 / 90): right in 36% / 47% / 55% of "
               "those (28 of 77, 65 of 138, 137 of 250); the control stays at 7-9%."),
    Claim("ciphers_robustness", "Ciphers: instructions are robust to skewed demonstrations",
          "Ciphers whose demonstrations use common keys (80%) are executed on uniformly drawn "
          "keys better from their instruction than from those demonstrations, and best from "
          "both.",
          f"PBB was more robust than skewed demonstrations, and the two combined were best "
          f"({NO_FIGURE}).",
          (Comparison(C("instruction"), C("skewed_demos"), "above"),
           Comparison(C("both"), C("instruction"), "above (combined best)"),
           Comparison(C("both"), C("skewed_demos"), "above (combined best)")),
          prerequisite=Prerequisite(C("stage1"), 0.5, "stage 1 on the train ciphers' held-out "
                                    "inputs"),
          note="Stage 1 alone, measured step by step (python -m pbb.evaluation.cipher_steps; "
               "docs/results/LOG.md, ciphers): with the lookup trace it found a letter's position "
               "in 87% of the steps but the letter at a written position (a lookup by a number, "
               "which the tokenizer splits into digits) in 9%: 0 of 48 train-cipher queries. The "
               "walk trace looks nothing up by number; with 24 demonstrations per train cipher and "
               "the output grown as the code's own quoted string (out = 'or') a step was right in "
               "67-69% of the steps, so texts of 3-4 letters (3-4 steps) were right in 14.6-18.8% "
               "at seeds 0-1. Texts of 1-2 letters lifted stage 1 to 64.6 / 70.8 / 77.1% at seeds "
               "0-2 (102 of 144), but the instruction model at seed 0 executed 0 of 48 eval-cipher "
               "queries: it recalled every eval cipher's code exactly and spelled none of their "
               "rings (the code's alphabet one string, BPE pieces; the train ciphers' rings it had "
               "from their demonstrations). The recipe since: the code writes the alphabet one "
               "letter a token (alphabet_code: spaced), the ciphers encrypt only (a decrypting "
               "ring is the alphabet reversed), and stage 2 replays stage 1's rows as half its "
               "rows (at a quarter the instruction model recalled the train ciphers' code in 1 of "
               "48 completions). Stage 1: 52.1 / 58.3 / 43.8% at seeds 0-2 (74 of 144; at seed 2 "
               "a letter of the text was left unwalked). At seed 0 the instruction model "
               "executed 31.2% of the eval ciphers' queries (15 of 48; the ring right in 35%) and "
               "45.8% of the train ciphers'; the skewed demonstrations (24 a cipher, 80% of them "
               "on its common key, the CoT ones a walk of the key hop by hop) 83.3% (40 of 48; "
               "the ring right in 100%, the step's key in 95%): a walk shows how any key is "
               "used, so the skew toward one key hid none of the others. Seed 1 the same way: "
               "18.8% (9 of 48; the ring right in 15%) against 60.4% (29 of 48; 98%); seed 2: "
               "33.3% (16 of 48) against 68.8% (33 of 48). Both in one stage 2 (the instruction "
               "and the skewed demonstrations), seed 0: 77.1% (37 of 48; the ring right in "
               "100%, the step's key in 96%), above the instruction alone (31.2%) and not above "
               "the demonstrations alone (83.3%): the walks carry it; seed 1: 54.2% (26 of 48; "
               "the ring right in 98%, the key in 80%) against 18.8% and 60.4%. The same "
               "demonstrations without their walks (a probe at seed 0, skewed_direct in "
               "configs/ciphers_robustness.yaml: input -> output only) 0 of 48, the ring never "
               "right: where the demonstrations do not show the procedure, the instruction is "
               "above them (31.2%), as the paper says; at 3 seeds, the claim "
               "ciphers_direct_demos."),
    Claim("ciphers_direct_demos", "Ciphers: instructions are robust to skewed demonstrations "
          "that show no procedure",
          "Ciphers whose demonstrations are input -> output only, 80% of them on one common key, "
          "are executed on uniformly drawn keys better from their instruction than from those "
          "demonstrations, and best from both.",
          f"PBB was more robust than skewed demonstrations, and the two combined were best "
          f"({NO_FIGURE}; whether the paper's demonstrations showed a trace is not in our "
          f"notes).",
          (Comparison(C("instruction"), C("skewed_direct"), "above"),
           Comparison(C("instruction"), C("skewed_direct", "direct"),
                      "above (the demonstrations' own mode)"),
           Comparison(C("both_direct"), C("instruction"), "above (combined best)"),
           Comparison(C("both_direct"), C("skewed_direct", "direct"), "above (combined best)")),
          prerequisite=Prerequisite(C("stage1"), 0.5, "stage 1 on the train ciphers' held-out "
                                    "inputs"),
          note="ciphers_robustness with the eval ciphers' demonstrations stripped of their "
               "chain of thought: there a CoT demonstration walks its key hop by hop along the "
               "cipher's ring, which shows how any key is used, and the skewed demonstrations "
               "beat the instruction. Stage 1 and the instruction model are that claim's (the "
               "same stages, evaluated once). The skewed direct demonstrations trained direct "
               "answers only, so they are measured in that mode too; stage 1 gives every model "
               "the walk for the train ciphers. Both together (the code x10 and the direct "
               "demonstrations in one stage 2) executed 31.2 / 39.6 / 39.6% at seeds 0-2, the "
               "code recalled exactly in 85-92% of the completions: never below the instruction "
               "model, above it at two seeds, the interval still including 0."),
    Claim("grammars_above_chance", "Grammars known only from their rules, above chance",
          "A model that saw a grammar's rules only generates strings the grammar accepts more "
          "often than random strings of the same lengths do.",
          f"Strings generated for grammars known from their rules are accepted ({NO_FIGURE}).",
          (Comparison(C("proactive"), C("proactive", field="chance"), "above chance"),),
          prerequisite=Prerequisite(C("stage1_only"), 0.5, "stage 1 on the train grammars' "
                                    "held-out queries"),
          note="The prerequisite took three changes to the recipe: stage 1 trained until it "
               "recalls 90% of the train grammars (10 rows each; with 6 rows and 3 epochs the "
               "model derived from misremembered grammars, 7.5% valid), derivations whose steps "
               "copy the grammar's rule line before picking an alternative, and 12 "
               "demonstrations per train grammar (with 4: 41.0% over seeds 0-4). The claim took "
               "two more: the pick trace (with steps that only name their rule the eval grammars "
               "were 13.0% valid against 10.1% chance, +2.9 [-6.2, +14.9], a step's rule the "
               "grammar's in 70% of the step lines) and stage 2 replaying stage 1's rows as half "
               "of its rows (at a quarter, stage 2 wore stage 1 down: at seed 0 the train "
               "grammars recalled 55% against 95%, derived right 22.5% against 85%, the eval "
               "grammars 0.0% valid; at half, 40.0%). Per seed on the eval grammars: recalled "
               "80 / 100 / 100 / 70 / 90%, derivations right throughout 55 / 60 / 10 / 30 / 55% "
               "(python -m pbb.evaluation.grammar_steps; docs/results/LOG.md, grammars)."),
    Claim("familiar_algorithms", "Familiar algorithms",
          "On classic algorithms (familiar from pretraining) proactive PBB is still best, "
          "though the untuned model already executes some.",
          "Leetcode-style solutions familiar from pretraining; the direction is the issue's "
          f"reading of the paper ({NO_FIGURE}).",
          (Comparison(C("proactive"), C("untuned"), "above (untuned already executes some)"),
           Comparison(C("proactive"), C("stage1_only"), "above")),
          note="Its retroactive part is the claim familiar_retroactive. Measured at seeds 0-4 (the"
               " eval functions' CoT samples, docs/results/LOG.md): the untuned model executes "
               "none (0%: 41-51 of its 54 completions write no `Answer:` line), nor under the "
               "library's own names (`data.options.names: familiar`, the same functions and "
               "inputs: 0 of 162 at seeds 0-2, an `Answer:` line in 14; it explains the code "
               "rather than running it), so the premise that it executes some does not hold at "
               "135M; the proactive model recalls the code exactly in 63-94% of its completions "
               "but is right in 7-22% of those: executing the recalled code (loops, recursion, "
               "sorting) is the step that fails (stage 2 recalled 67 / 94 / 100 / 94 / 89% of the "
               "eval functions after its 4 epochs)."),
    Claim("familiar_retroactive", "Familiar algorithms: retroactive gains smaller",
          "On classic algorithms (familiar from pretraining) retroactive PBB still executes the "
          "eval functions beyond what the same RL does without their code, by less than on "
          "random functions.",
          "Leetcode-style solutions familiar from pretraining; the direction is the issue's "
          f"reading of the paper ({NO_FIGURE}).",
          (Comparison(C("retroactive", where=ONE_PASS), C("rl_only"), "above"),
           Comparison(C("retroactive", where=ONE_PASS), C("rl_only"),
                      "smaller than on random functions", direction=-1,
                      against="retroactive_rl")),
          note="retroactive_rl's recipe (a stage of every function's code, an SFT warm start on "
               "every demonstration of the train functions, 24 GRPO steps) on familiar_algorithms'"
               " 70 library functions, completions up to 224 tokens. The second row sets the "
               "difference against retroactive_rl's (other functions, other runs: unpaired, each "
               "side's seeds and behaviours resampled apart)."),
    Claim("stage2_alone", "Stage 2 alone executes nothing",
          "Training on the code of the eval functions alone, with no demonstration of any "
          "function, does not make the model execute them: the demonstrations of stage 1 are "
          "needed.",
          f"Near 0% with stage 2 alone {SECONDARY}.",
          (Comparison(C("proactive"), C("stage2_only"), "above (stage 2 alone near 0%)"),)),
)
NAMES = tuple(c.name for c in CLAIMS)


def select(only: list[str] | None) -> list[Claim]:
    """The claims ``--only`` names (all without it); an unknown name is one error."""
    for name in only or []:
        if name not in NAMES:
            raise PbbError(f"--only {name}: no such claim; the claims are {', '.join(NAMES)}")
    return [c for c in CLAIMS if not only or c.name in only]


def config_path(configs: Path, claim: Claim) -> Path:
    return Path(configs) / f"{claim.name}.yaml"


def claims_hint(config: Path) -> str | None:
    """A line for ``pbb plan`` or ``pbb sweep`` given a claim's own config (``configs/claims``
    or ``configs/gpu/claims``): ``pbb claims`` runs it into the claims folder, whose stage store
    the claims share, while a plain sweep of it trains everything again into its own folder."""
    path = Path(config).resolve()
    for (configs, out, _), flag in ((CPU, ""), (GPU, " --gpu")):
        if path.parent == configs.resolve() and path.stem in NAMES:
            return (f"note: {config} is the config of claim {path.stem}: `pbb claims{flag} "
                    f"--only {path.stem}` runs it (`--plan` plans it) in the claims folder, "
                    f"reusing the stages the claims share; this command uses its own folder "
                    f"(a variant of the claim: --out NEW --stages-root {out / STAGES} trains "
                    "only the stages that differ)")
    return None


def verdict(low: float, high: float, direction: int,
            prerequisite: tuple[float, float] | None = None) -> str:
    """The verdict of an interval ``[low, high]`` of a difference whose sign the paper gives
    (``direction``); ``prerequisite``: (measured, needed), not testable when measured < needed."""
    if prerequisite is not None and prerequisite[0] < prerequisite[1]:
        return NOT_TESTABLE
    if (direction > 0 and low > 0) or (direction < 0 and high < 0):
        return REPRODUCED
    return NOT_REPRODUCED


def crossover_verdict(low: float, high: float,
                      prerequisite: tuple[float, float] | None = None) -> str:
    """The verdict of N's interval ``[low, high]``: reproduced where it lies above 1 (one
    instruction worth more than one demonstration); ``inf``: more than the largest k tried."""
    return verdict(low - 1, high - 1, 1, prerequisite)


def check_configs(configs: Path) -> None:
    """Stop with one line where the claims' config folder is missing: the default is relative
    (``configs/claims``), and from outside a checkout one claim's file not found said less."""
    if not Path(configs).is_dir():
        raise PbbError(f"{configs}: no such folder (the claims' sweep configs, <claim>.yaml "
                       "each): run pbb claims in a pbb checkout, or give --configs")


def run_claims(configs: Path, out: Path, only: list[str] | None = None,
               overrides: dict | None = None, smoke: bool = False, progress: bool = True,
               doc: Path = CPU[2], execute: bool = True, jobs: int = 1,
               jobs_per_device: int | str = 1) -> list[dict]:
    """Run the selected claims' sweeps (``execute``) in ``out``, sharing one stage store, each
    ``jobs`` points at a time (``pbb sweep --jobs``: one process a point, at most
    ``jobs_per_device`` on a GPU; a stage two points need is trained once under its lock);
    then measure every claim and write ``doc`` (and its figure). Returns the measurements, each
    with the table's entry of it (``"entry"``: kept from ``doc`` where none of its runs is here)."""
    from pbb.experiments.sweep import run_sweep
    from pbb.folders import check_out, mark

    chosen = select(only)
    check_configs(configs)
    check_doc(doc)
    out = Path(out)
    plans, archives = _plans(configs, overrides, smoke), _archives(doc)
    if execute or out.is_dir() or _restorable(out, archives, plans):
        check_out(out, "claims", replace=False)
        out.mkdir(parents=True, exist_ok=True)
        mark(out, "claims")
        restore(out, doc, archives, plans)

    def kept(claim: Claim, _point: str) -> None:  # a point finished: archived, in the table
        if pack(out, doc, plans, True, (claim,)):
            table(configs, out, overrides, smoke, doc, quiet_errors=True)

    stopped = True
    try:
        for claim in chosen if execute else []:
            console.print(f"[bold]claim {claim.name}[/]: {claim.title}")
            sweep = partial(run_sweep, config_path(configs, claim), out / claim.name, overrides,
                            progress=progress, smoke=smoke, stages_root=out / STAGES,
                            jobs=jobs, jobs_per_device=jobs_per_device,
                            remedy=f"its config changed since it ran: move {out / claim.name} "
                                   f"aside to run claim {claim.name} as it is now (stages that "
                                   f"still agree are reused from {out / STAGES})",
                            after_point=partial(kept, claim))
            _sweep_claim(claim, sweep, configs, out, overrides, smoke)
        stopped = False
    finally:  # the points finished so far are kept, stopped or not (a claim takes hours)
        if pack(out, doc, plans, quiet_errors=stopped) and stopped:
            table(configs, out, overrides, smoke, doc, quiet_errors=True)
    return table(configs, out, overrides, smoke, doc)


def table(configs: Path, out: Path, overrides: dict | None, smoke: bool, doc: Path,
          quiet_errors: bool = False) -> list[dict]:
    """Measure every claim and write ``doc`` (and its figure); returns the measurements, each
    with its table entry. Written whenever the archives beside ``doc`` change (a point
    finished, the claims stopped), not only at the end: the table then says what its archives
    hold, and a clone's ``pbb claims --no-run`` rewrites it byte for byte. ``quiet_errors``: a
    table that cannot be written then is one line, whatever the cause (the points go on; the
    table at their end says it as an error)."""
    try:
        measured = [measure(c, configs, out, overrides, smoke) for c in CLAIMS]
        for m, e in zip(measured, write(measured, Path(doc), configs, out)):
            m["entry"] = e
    except Exception as e:  # noqa: BLE001 - mid-run, a table is not worth the points at work
        if not quiet_errors:
            raise
        console.print(f"{doc}: not written: {e}", markup=False)
        return []
    return measured


def _once_per_claim(work):
    """``work(claim)``, worked out once per claim (by name), when first asked."""
    known: dict = {}

    def once(claim: Claim):
        if claim.name not in known:
            known[claim.name] = work(claim)
        return known[claim.name]

    return once


def _plans(configs: Path, overrides: dict | None, smoke: bool):
    """Each claim's sweep record as its config, ``--set`` and ``--smoke`` make it now (what
    ``sweep.json`` says once the claim's sweep starts)."""
    from pbb.experiments.sweep import load_sweep, sweep_record

    return _once_per_claim(lambda claim: sweep_record(*load_sweep(
        config_path(configs, claim), overrides, smoke)))


def _archives(doc: Path | None):
    """Each claim's archive beside the table ``doc`` (None where it has none), read and
    checked."""
    def archived(claim: Claim) -> archive.Archive | None:
        path = archive.archive_path(doc, claim.name)
        return archive.read(path) if path.is_file() else None

    return _once_per_claim(archived)


def _restorable(out: Path, archives, plans) -> bool:
    """Whether an archive holds runs of a claim's plan that ``out`` has no sweep of."""
    return any(not (out / c.name).exists() and _restored(out / c.name, archives(c), plans(c))
               for c in CLAIMS)


def _restored(sweep_dir: Path, kept: archive.Archive | None, plan: dict) -> frozenset[str]:
    """The points (folders ``runs/<point>``) that :func:`restore` brings into ``sweep_dir``
    from the archive ``kept``: all its finished points where there is no sweep folder and they
    are of the claim's ``plan``, else those the sweep there lacks (:func:`.claims_archive.fill`,
    its plan grown to ``plan`` where it is an older one)."""
    if kept is None:
        return frozenset()
    if not sweep_dir.exists():
        done = archive.finished(kept)
        return done if of_plan(kept.record, plan, done) else frozenset()
    return frozenset(archive.lacking(kept, sweep_dir, plan))


def restore(out: Path, doc: Path, archives, plans) -> None:
    """Restore each claim's archived runs (:mod:`pbb.experiments.claims_archive`, beside the
    table ``doc``): its whole sweep where ``out`` has none and they are of its plan now, else
    the finished points that its sweep here lacks, where they are of that sweep's plan or of
    its plan now that the sweep's grew into (a config given more points since it ran here). A
    fresh clone measures from the same samples, and runs only the points not finished anywhere
    yet."""
    for claim in CLAIMS:
        if (out / claim.name).exists():  # points finished elsewhere that it lacks
            try:
                kept = archives(claim)
                n = archive.fill(kept, out / claim.name, plans(claim)) if kept is not None else 0
            except PbbError as e:  # a broken archive, a process at work there: its sweep here
                console.print(f"claim {claim.name}: not filled from "
                              f"{archive.archive_path(doc, claim.name)}: {e}", markup=False)
                continue
        elif (kept := archives(claim)) is None:
            continue
        elif _restored(out / claim.name, kept, plans(claim)):
            n = archive.unpack(kept, out / claim.name)
        else:
            console.print(f"claim {claim.name}: {kept.path} holds runs of another plan than its "
                          "config's now; not restored (its points run anew)", markup=False)
            continue
        if n:
            console.print(f"claim {claim.name}: {n} finished point(s) restored from {kept.path}",
                          markup=False)


def pack(out: Path, doc: Path, plans, quiet_errors: bool = False,
         claims: tuple[Claim, ...] = CLAIMS) -> list[str]:
    """Keep the finished runs of each claim's sweep in ``out`` that is of its plan now beside
    the table ``doc`` (:mod:`.claims_archive`): every claim's once the claims end or are
    stopped, and a claim's each time one of its points finishes (a machine lost mid-claim, its
    ``runs/`` with it, keeps them in the archive). ``quiet_errors``: an archive that cannot be
    written is one line, not an error (the claims were stopped, or are still at work: that is
    the news; the pack at their end says it as an error). Returns the claims whose archive
    it wrote (one that holds these files already is left as it is)."""
    changed = []
    for claim in claims:
        path = archive.archive_path(doc, claim.name)
        try:
            record = archive.record_of(out / claim.name)
            if record is not None and not of_plan(record, plans(claim),
                                                  started(out / claim.name, record)):
                console.print(f"claim {claim.name}: {out / claim.name} holds runs of another "
                              "plan than its config's now; not packed", markup=False)
            elif record is not None:
                packed = archive.pack(out / claim.name, path)
                if packed is not None and packed.wrote:
                    changed.append(claim.name)
        except archive.GrownElsewhere as e:  # nothing lost: said, and the other claims go on
            console.print(f"claim {claim.name}: its runs not packed: {e}", markup=False)
        except (PbbError, OSError) as e:
            if not quiet_errors:
                raise
            console.print(f"claim {claim.name}: its runs not packed: {e}", markup=False)
    return changed


def _gated(claim: Claim, configs: Path, overrides: dict | None, smoke: bool) -> int:
    """How many of the claim's points run only once its prerequisite is met: those that do not
    measure it, where others do (0 where it has none or every point measures it)."""
    from pbb.experiments.sweep import load_sweep

    if claim.prerequisite is None:
        return 0
    _, _, planned = load_sweep(config_path(configs, claim), overrides, smoke)
    rest = sum(not matches(claim.prerequisite.condition, p["config"]) for p in planned)
    return rest if rest < len(planned) else 0


def _sweep_claim(claim: Claim, sweep, configs: Path, out: Path, overrides: dict | None,
                 smoke: bool) -> None:
    """Run the claim's sweep (``sweep``, taking ``select``). Where its prerequisite has points of
    its own, those run first, and the rest only where the prerequisite is met, pooled over every
    seed: where it failed, the claim's verdict is "not testable at this size" whatever they
    show (the ciphers' take ~8 h on 2 cores, says --plan; ``pbb sweep`` on the claim's config
    runs them all the same)."""
    pre, rest = claim.prerequisite, _gated(claim, configs, overrides, smoke)
    if not rest:
        sweep()
        return
    def measures(cfg: dict) -> bool:  # a point of the prerequisite's own
        return matches(pre.condition, cfg)

    sweep(select=measures)
    got = prerequisite_figure(claim, points(Path(out) / claim.name)[0])
    if not prerequisite_failed(claim, got):
        sweep(select=lambda cfg: not measures(cfg))
        return
    console.print(f"claim {claim.name}: {pre.what}: {100 * got:.1f}% < {100 * pre.at_least:.1f}% "
                  f"over its seeds, so its verdict is not testable at this size; its other "
                  f"{rest} point(s) are not run (`pbb sweep {config_path(configs, claim)} --out "
                  f"{Path(out) / claim.name} --stages-root {Path(out) / STAGES}` runs them)")


def plan_claims(configs: Path, out: Path, only: list[str] | None = None,
                overrides: dict | None = None, smoke: bool = False,
                doc: Path | None = None) -> str:
    """What :func:`run_claims` would run, and its expected time on this machine's measured
    rates: one line a claim (one claim chosen: each point's plan too), a stage or evaluation
    that an earlier claim makes counted there only, as the claims share them. Writes nothing."""
    from pbb.experiments.plan import PlannedSweep
    from pbb.memo import memoized

    chosen, out = select(only), Path(out)
    check_configs(configs)
    if doc is not None:  # what pbb claims refuses, the plan refuses
        check_doc(doc)
    shared: tuple[dict, dict] = ({}, {})  # what earlier claims train and evaluate
    texts, lines, every = [], [], PlannedSweep(out, 0, [])
    plans, archives = _plans(configs, overrides, smoke), _archives(doc)
    with memoized():  # claims share data sets and curricula too (scaling's, proactive's)
        for claim in chosen:
            planned, line = _plan_claim(claim, configs, out, overrides, smoke, plans,
                                        archives, doc is not None, shared)
            if len(chosen) == 1:
                texts += planned.texts
            lines += line
            every.add(planned)
    return "\n\n".join([*texts, "\n".join([*lines, f"all {len(chosen)} claim(s) into {out}: "
                                                        f"expected time {every.total()}"])])


def _plan_claim(claim: Claim, configs: Path, out: Path, overrides: dict | None, smoke: bool,
                plans, archives, read: bool, shared: tuple[dict, dict]):
    """One claim's planned points and its lines of :func:`plan_claims`; ``read``: whether its
    archive is read (a table is named)."""
    from pbb.experiments.plan import plan_points

    lines = []
    try:
        restored = _restored(out / claim.name, archives(claim) if read else None,
                             plans(claim))
    except PbbError as e:  # as pbb claims, which carries on where a sweep is here
        restored = frozenset()
        lines.append(f"{claim.name}: its archive not counted: {e}")
    planned = plan_points(config_path(configs, claim), out / claim.name, overrides, smoke,
                          out / STAGES, *shared, restored,
                          archives(claim).record if restored else None)
    gated = _gated(claim, configs, overrides, smoke)
    lines.append(f"{claim.name}: {planned.points} points, expected time {planned.total()}"
                 + (f" ({gated} of the points run only where its prerequisite is met)"
                    if gated else "")
                 + (f" ({len(restored)} finished elsewhere, kept in "
                    f"{archives(claim).path}: restored before it runs)" if restored else ""))
    return planned, lines


# --- reading the runs ----------------------------------------------------------------------
@dataclass
class Point:
    """A finished sweep point: its config, its summary and its run directory."""

    cfg: object
    summary: dict
    store: RunStore

    @property
    def data_key(self) -> tuple:
        """The data set the run used (seed and files' digests): runs with the same key evaluated
        the same behaviours on the same inputs, so their accuracies pair."""
        sha = self.summary.get("data", {}).get("sha256") or self.cfg.data.model_dump(
            mode="json", exclude={"instruction_format"})
        return (self.cfg.seed, json.dumps(sha, sort_keys=True))


def points(sweep_dir: Path) -> tuple[list[Point], int]:
    """The finished points of a sweep directory, and how many points it has."""
    from pbb.config import load_config

    sweep = SweepStore(sweep_dir)
    if not sweep.record.is_file():
        return [], 0
    record = read_record(sweep)
    done = []
    for p in record["points"]:
        store = RunStore(Path(sweep_dir) / p["dir"])
        if store.summary.is_file():
            done.append(Point(load_config(store.config), read_summary(store.summary), store))
    return done, len(record["points"])


def setting_of(cfg, key: str) -> object:
    """The value of dotted ``key`` in a run config (None where it has none)."""
    node = cfg.model_dump(mode="json")
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def matches(cond: Condition, cfg) -> bool:
    """Whether a point's config runs ``cond``: its curriculum, its mode, every ``where``."""
    return (cond.curriculum in cfg.curricula and cond.mode in cfg.eval.modes
            and all(setting_of(cfg, key) == value for key, value in cond.where))


def expand(comp: Comparison, cfgs: list) -> list[Comparison]:
    """``comp``, or with ``each`` one comparison for each value the configs give its key."""
    if comp.each is None:
        return [comp]
    key, unit = comp.each
    values = sorted({setting_of(c, key) for c in cfgs if matches(comp.a, c)},
                    key=lambda v: (isinstance(v, str), v))

    def at(cond: Condition, v: object) -> Condition:
        return replace(cond, where=(*cond.where, (key, v)), setting=f"{v} {unit}")

    return [replace(comp, a=at(comp.a, v), b=at(comp.b, v), each=None) for v in values]


def _composites(point: Point) -> set[str]:
    from pbb import data as data_mod

    ds = data_mod.load(point.store.data_dir(point.cfg))
    splits = {b.id: b.split for b in ds.behaviours}
    return {b.id for b in ds.behaviours if ds.domain.composite_parts(b, splits) is not None}


def accuracies(pts: list[Point], cond: Condition, split: str,
               only: str | None = None) -> dict[tuple, dict[str, float]]:
    """Data key -> behaviour -> mean of ``cond.field`` over its samples, for every finished
    point that ran ``cond`` (one run per data set: two would be ambiguous)."""
    out: dict[tuple, dict[str, float]] = {}
    for p in pts:
        path = p.store.samples(cond.curriculum, cond.mode)
        if not matches(cond, p.cfg) or not path.is_file():
            continue
        if p.data_key in out:
            raise PbbError(f"{p.store.root}: a second run of {cond.label} on the same data set; "
                           "the claim's condition needs a `where` that tells them apart")
        keep = _composites(p) if only == "composites" else None
        part = [s for s in read_samples(path) if s["split"] == split
                and (keep is None or s["behaviour_id"] in keep)]
        if part:
            out[p.data_key] = per_behaviour_field(part, cond.field)
    return out


def mean_over_runs(runs: dict[tuple, dict[str, float]]) -> float:
    """The mean over runs of each run's mean over behaviours."""
    means = [sum(v.values()) / len(v) for v in runs.values()]
    return sum(means) / len(means)


def differences(a: dict[tuple, dict[str, float]],
                b: dict[tuple, dict[str, float]]) -> dict[tuple, list[float]]:
    """Data key -> the differences a - b over the behaviours both its runs have."""
    out = {}
    for key in sorted(set(a) & set(b)):
        d = [a[key][x] - b[key][x] for x in sorted(set(a[key]) & set(b[key]))]
        if d:
            out[key] = d
    return out


def paired(a: dict[tuple, dict[str, float]], b: dict[tuple, dict[str, float]]) -> dict | None:
    """The paired difference a - b over the (run, behaviour) pairs both have, with its interval
    and each seed's mean difference, and each side's mean over those runs (a side run at a seed
    the other has not yet would otherwise put its figure beside a difference that leaves that
    seed out); None where they share no pair."""
    groups = differences(a, b)
    diffs = [x for g in groups.values() for x in g]
    if not diffs:
        return None
    low, high = grouped_ci(list(groups.values()), RESAMPLES)
    by_seed: dict[int, list[float]] = {}  # two data sets at one seed: one seed's figure
    for key, g in groups.items():
        by_seed.setdefault(key[0], []).extend(g)
    per_seed = {seed: settled(sum(g) / len(g)) for seed, g in by_seed.items()}
    both = {key: a[key] for key in groups}, {key: b[key] for key in groups}
    return {"a": mean_over_runs(both[0]), "b": mean_over_runs(both[1]),
            "difference": settled(sum(diffs) / len(diffs)),
            "ci_low": settled(low), "ci_high": settled(high), "pairs": len(diffs),
            "per_seed": [per_seed[s] for s in sorted(per_seed)], "seeds": sorted(per_seed)}


def settled(x: float) -> float:
    """``x`` rounded to 12 places, with no negative zero: two runs of equal accuracy differ by
    a rounding residue (-3e-18) that a sign test would count as a seed below and the table would
    print as -0.0."""
    return round(x, 12) + 0.0


def gap(here: dict[tuple, list[float]], there: dict[tuple, list[float]]) -> dict | None:
    """The gap between two claims' paired differences (:func:`differences` of each): the pooled
    difference here minus there (``a``, ``b``), with an interval resampling each side apart
    (:func:`pbb.evaluation.metrics.gap_ci`); None where either has no pair. No seed's own gap:
    the two sides' seeds ran other functions."""
    a, b = [x for g in here.values() for x in g], [x for g in there.values() for x in g]
    if not a or not b:
        return None
    low, high = gap_ci(list(here.values()), list(there.values()), RESAMPLES)
    da, db = sum(a) / len(a), sum(b) / len(b)
    return {"a": da, "b": db, "difference": settled(da - db), "ci_low": settled(low),
            "ci_high": settled(high),
            "pairs": len(a), "per_seed": [], "seeds": sorted({key[0] for key in here})}


def crossover_figure(pts: list[Point], spec: Crossover) -> dict | None:
    """N with its interval from the runs' samples (:func:`pbb.experiments.efficiency.estimate`)."""
    from pbb.experiments import efficiency

    per_seed: dict[int, dict] = {}
    for p in pts:
        entry = per_seed.setdefault(p.cfg.seed, {"curve": {}, "instruction": None})
        for name in (spec.demos, spec.instruction):
            runs = accuracies([p], C(name, spec.mode), "eval")
            if not runs:
                continue
            (acc,) = runs.values()
            if name == spec.demos:
                entry["curve"][p.cfg.curriculum.demos_only_k] = acc
            else:
                entry["instruction"] = acc
    try:
        est = efficiency.estimate(per_seed, RESAMPLES)
    except ValueError:
        return None
    return {**est, "statement": efficiency.describe(est["crossover"], est["ks"])}


def timing(pts: list[Point]) -> tuple[float, float]:
    """(seconds the claim's runs spent, by their summaries' timing; seconds it would cost
    alone: that plus the time of the stages and evaluations its runs took from other claims)."""
    spent = sum(sum(p.summary.get("timing", {}).values()) for p in pts)
    trained, reused = set(), {}
    for p in pts:
        timed = p.summary.get("timing", {})
        done = [(f"train {curriculum}/{e['stage']}", e["dir"], e.get("seconds", 0.0))
                for curriculum, entries in p.summary.get("stages", {}).items() for e in entries]
        done += [(f"eval {name}", e["dir"], e.get("seconds", 0.0))
                 for name, e in p.summary.get("evals", {}).items()]
        for label, rel, seconds in done:
            where = os.path.normpath(p.store.root / rel)
            if label in timed:
                trained.add(where)
            else:
                reused[where] = seconds
    return spent, spent + sum(v for k, v in reused.items() if k not in trained)


#: what tells two trainings of one stage apart in their records: an SFT stage's epochs, steps
#: and final loss, a GRPO stage's steps and last window's reward and correctness; the precision;
#: last, the saved weights' digest (records written before it lack one)
_OUTCOME = ("epochs", "steps", "bf16", "train_loss", "reward_last", "correct_last",
            "weights_sha256")


def _one_training(a: tuple, b: tuple) -> bool:
    """Two records of one stage key (:data:`_OUTCOME`'s figures) are one training: by their
    weights' digests where both have one, else by every other figure."""
    return a[-1] == b[-1] if a[-1] and b[-1] else a[:-1] == b[:-1]


def trained_apart(pts: list[Point]) -> list[dict]:
    """The stages that the claim's points record under one key but trained apart (the stage
    retrained where the store lacked its weights: another machine, the archives keeping none,
    or a cleared store): each key's seed and its trainings (epochs or steps, precision, final
    loss or reward, weights' digest, and the points that used each). The claim's points that
    share such a key did not start from the same model, which their pairing assumes; the table
    says so rather than leave it to the results log. A stage reused or resumed has one record
    (its ``done.json``). Two records with digests are one training where the digests agree; a
    record from before digests were written joins a training whose other figures it shares."""
    records: dict[str, list[tuple[tuple, str]]] = {}
    seeds: dict[str, int] = {}
    for p in pts:
        for entries in p.summary.get("stages", {}).values():
            for e in entries:
                key = os.path.basename(os.path.normpath(e["dir"]))
                records.setdefault(key, []).append(
                    (tuple(e.get(k) for k in _OUTCOME), p.store.root.name))
                seeds[key] = p.cfg.seed
    apart = []
    for key, recs in sorted(records.items()):
        trainings: list[tuple[tuple, list[str]]] = []
        for o, name in sorted(recs, key=lambda r: r[0][-1] is None):  # digests first
            used = next((names for t, names in trainings if _one_training(t, o)), None)
            if used is None:
                used = []
                trainings.append((o, used))
            if name not in used:
                used.append(name)
        if len(trainings) > 1:
            apart.append({"stage": key, "seed": seeds[key], "trainings": [
                {**dict(zip(_OUTCOME, o)), "points": sorted(names)}
                for o, names in sorted(trainings, key=lambda t: sorted(t[1]))]})
    return apart


def wall(sweep_dir: Path, pts: list[Point]) -> tuple[float, int, int] | None:
    """(wall seconds, most at once, points counted) of the finished points' jobs, where the sweep
    ran points as jobs (``jobs.json``, :mod:`.executors`) and at least two at once: the union of
    each job's span from start to end, the stops of the sweep's process left out (:func:`_span`),
    which the summed run times overstate by about the number at once. A point started again
    counts its last job; a point with no finished job there (run in the sweep's own process,
    restored from elsewhere) is not counted, and the table says how many were. None where no two
    points overlapped."""
    jobs = read_jobs(SweepStore(sweep_dir).jobs)
    names = {p.store.root.name for p in pts}
    spans = sorted(_span(j) for name, j in jobs.items()
                   if name in names and j.get("exit_code") == 0
                   and all(isinstance(j.get(k), (int, float)) for k in ("started", "ended")))
    seconds, most, start, end, running = 0.0, 0, None, None, []
    for a, b in spans:
        running = [e for e in running if e > a] + [b]
        most = max(most, len(running))
        if end is None or a > end:
            seconds += 0.0 if end is None else end - start
            start, end = a, b
        else:
            end = max(end, b)
    if most < 2:
        return None
    return seconds + end - start, most, len(spans)


def _span(job: dict) -> tuple[float, float]:
    """A job's span on its sweep's working timeline (the stops of the sweep's process left
    out, :mod:`.executors`), or from its start to its end where it has none (older records)."""
    if all(isinstance(job.get(k), (int, float)) for k in ("start_work", "end_work")):
        return job["start_work"], job["end_work"]
    return job["started"], job["ended"]


def _planned_points(claim: Claim, configs: Path, out: Path, overrides: dict | None,
                    smoke: bool) -> list[dict]:
    """The claim's points as its sweep in ``out`` names them (:func:`.sweep.load_sweep`'s
    ``earlier``: a grown sweep's points keep their names)."""
    from pbb.experiments.sweep import load_sweep

    earlier = archive.record_of(Path(out) / claim.name)
    return load_sweep(config_path(configs, claim), overrides, smoke, earlier)[2]


def measure(claim: Claim, configs: Path, out: Path, overrides: dict | None = None,
            smoke: bool = False) -> dict:
    """Everything the table says of one claim, from its sweep's finished runs."""
    pts, total = points(Path(out) / claim.name)
    planned = _planned_points(claim, configs, out, overrides, smoke)
    cfgs = [p["config"] for p in planned]
    spent, alone = timing(pts)
    result = {"claim": claim, "config": config_path(configs, claim), "done": len(pts),
              "points": max(total, len(cfgs)), "cfgs": cfgs,  # a grown config: its new points too
              "seeds": sorted({c.seed for c in cfgs}), "spent": spent, "alone": alone,
              "wall": wall(Path(out) / claim.name, pts),  # where its points ran at once
              "apart": trained_apart(pts),
              "settings": settings_hash(cfgs),
              "prerequisite": prerequisite_figure(claim, pts), "rows": [],
              # the claim's note tells what the CPU config's runs showed, not another config's
              "note_from": None if not smoke and Path(configs).resolve() == CPU[0].resolve()
              else config_path(CPU[0], claim)}
    # the settings its figures were measured under: the runs' own where the config changed since
    result["ran_otherwise"] = ran_otherwise(pts, planned, Path(out) / claim.name)
    result["measured_under"] = (settings_hash([p.cfg for p in pts]) if result["ran_otherwise"]
                                else result["settings"])
    for comp in [c for each in claim.comparisons for c in expand(each, cfgs)]:
        other, other_pts, other_cfgs = _other_sweep(comp, configs, out, overrides, smoke)
        ran = all(any(matches(cond, c) for c in (other_cfgs if cond.claim else cfgs))
                  for cond in (comp.a, comp.b))
        fig = _figure(comp, pts, other_pts) if ran else None
        result["rows"].append({"comparison": comp, "in_config": ran, "figure": fig,
                               "verdict": _unmeasured(claim, result) if fig is None else _judge(
                                   verdict, (fig["ci_low"], fig["ci_high"], comp.direction),
                                   claim, result),
                               "other": other, **row_points(comp, pts, cfgs)})
    if claim.crossover is not None:
        fig = crossover_figure(pts, claim.crossover)
        c = fig["crossover"] if fig else None
        judged = None if c is None else _judge(crossover_verdict, (c["ci_low"], c["ci_high"]),
                                               claim, result)
        result["crossover"] = {"figure": fig, "verdict": judged or _unmeasured(claim, result)}
    return result


def _figure(comp: Comparison, pts: list[Point], other_pts: list[Point]) -> dict | None:
    """A comparison's figure from the claim's finished points ``pts``: its paired difference
    (a condition of another claim's from that claim's finished points ``other_pts``), or
    (``comp.against``) the gap to the same difference in that claim's ``other_pts``."""
    def of(cond: Condition, own: list[Point]) -> dict[tuple, dict[str, float]]:
        return accuracies(other_pts if cond.claim else own, cond, comp.split, comp.only)

    if comp.against is None:
        return paired(of(comp.a, pts), of(comp.b, pts))
    return gap(differences(of(comp.a, pts), of(comp.b, pts)),
               differences(of(comp.a, other_pts), of(comp.b, other_pts)))


def row_points(comp: Comparison, pts: list[Point], cfgs: list, claim: str | None = None) -> dict:
    """The points a row rests on in the sweep of ``claim`` (None: the row's own; those that run
    a condition of the row's there, :meth:`Comparison.run_by`): finished and planned. A claim
    grown by points of another setting (a row of their own) leaves its first rows complete,
    and their verdicts say so."""
    def mine(cfg) -> bool:
        return any(matches(cond, cfg) for cond in comp.run_by(claim))

    done = sum(mine(p.cfg) for p in pts)
    return {"done": done, "points": max(done, sum(mine(c) for c in cfgs))}


def _other_sweep(comp: Comparison, configs: Path, out: Path, overrides: dict | None,
                 smoke: bool) -> tuple[dict | None, list[Point], list]:
    """Of the other claim a row rests on (:attr:`Comparison.other`; None, no points and no
    configs for other rows): how many of its points that run the row's conditions finished, of
    how many, and whether its runs were configured otherwise than its config is now, which the
    row's verdict says (its figure rests on that claim's runs too); its finished points, read
    once for the figure too, and its planned points' configs."""
    if comp.other is None:
        return None, [], []
    (other,) = select([comp.other])
    sweep_dir = Path(out) / other.name
    pts, _ = points(sweep_dir)
    planned = _planned_points(other, configs, out, overrides, smoke)
    cfgs = [p["config"] for p in planned]
    return {"claim": other.name, **row_points(comp, pts, cfgs, other.name),
            "otherwise": ran_otherwise(pts, planned, sweep_dir)}, pts, cfgs


def settings_hash(cfgs: list) -> str:
    """A short hash of what a claim's points are configured to do: each point's settings that
    differ from the defaults (dotted path -> value). The table records it, so a claim kept from
    an earlier table whose config has changed since (the figures no longer its config's) is told
    apart. A setting at its default is left out, so adding a setting to pbb changes no claim's
    hash; a changed default is a change of code, which the table's commit records."""
    points = [off_defaults(c) for c in cfgs]
    return hashlib.sha256(json.dumps(points, sort_keys=True).encode()).hexdigest()[:12]


def off_defaults(cfg) -> dict:
    """A run config's settings that differ from the defaults, dotted path -> value."""
    defaults = _default_settings()
    return {k: v for k, v in _dotted(cfg.model_dump(mode="json")).items()
            if k not in defaults or defaults[k] != v}


@cache
def _default_settings() -> dict:
    """The default run config's settings, dotted path -> value (built once a process)."""
    from pbb.config import RunConfig

    return _dotted(RunConfig().model_dump(mode="json"))


def ran_otherwise(pts: list[Point], planned: list[dict], sweep_dir: Path) -> bool:
    """Whether a finished run of the sweep was configured otherwise than its point is now (its
    config edited since, measured with ``--no-run``), or is no point of it any more."""
    now = {SweepStore.run_rel(p["name"]): off_defaults(p["config"]) for p in planned}
    return any(now.get(p.store.root.relative_to(sweep_dir).as_posix()) != off_defaults(p.cfg)
               for p in pts)


def _dotted(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def prerequisite_figure(claim: Claim, pts: list[Point]) -> float | None:
    """The claim's prerequisite as measured by the finished points (pooled over their seeds);
    None where it has none or no point measured it yet."""
    pre = claim.prerequisite
    runs = accuracies(pts, pre.condition, pre.split) if pre is not None else None
    return mean_over_runs(runs) if runs else None


def prerequisite_failed(claim: Claim, got: float | None) -> bool:
    """Whether the claim's prerequisite was measured (``got``) and is below its bar."""
    pre = claim.prerequisite
    return pre is not None and got is not None and got < pre.at_least


def _unmeasured(claim: Claim, result: dict) -> str:
    """The verdict of a comparison with no figure yet: not testable where the claim's
    prerequisite was measured and failed (why: its comparisons would say nothing, so a claim's
    config lists the prerequisite's points first and the hours of the rest need not be spent to
    reach the verdict); otherwise not run."""
    return NOT_TESTABLE if prerequisite_failed(claim, result["prerequisite"]) else NOT_RUN


def _judge(rule, args: tuple, claim: Claim, result: dict) -> str:
    """``rule(*args)`` (a verdict) with the claim's prerequisite as measured; not run where it
    has one that was not measured."""
    pre = claim.prerequisite
    if pre is None:
        return rule(*args)
    if result["prerequisite"] is None:
        return NOT_RUN
    return rule(*args, (result["prerequisite"], pre.at_least))
