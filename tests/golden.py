"""Fingerprints of generated data, shared by the golden-data test and the script that records them.

``python tests/golden.py`` prints the current fingerprints as JSON (to record them after an
intended change of the data, in ``tests/data/golden_sha256.json``); the test compares.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "golden_sha256.json"

#: one small data set per domain, and the quickstart's own data options
CASES = {
    "arithmetic": ("arithmetic", {}),
    "arithmetic_quickstart": ("arithmetic", {
        "min_args": 1, "max_args": 2, "min_statements": 1, "max_statements": 2,
        "branch_prob": 0.15, "loop_prob": 0.0, "max_const": 9, "input_min": 0, "input_max": 10,
        "max_abs_value": 99}),
    "algorithms": ("algorithms", {}),
    "ciphers": ("ciphers", {}),
    "grammars": ("grammars", {}),
}


def _sha(records) -> str:
    from pbb.jsonio import dumps

    return hashlib.sha256("".join(dumps(r) + "\n" for r in records).encode()).hexdigest()


def fingerprints() -> dict[str, str]:
    from pbb import data
    from pbb.config import CurriculumConfig
    from pbb.rows import curricula

    out = {}
    for case, (domain, options) in CASES.items():
        ds = data.generate(domain, behaviours=8, demos=2, test_inputs=2, eval_fraction=0.25,
                           seed=0, options=options, progress=False)
        out[f"{case}/behaviours"] = _sha(b.to_record() for b in ds.behaviours)
        out[f"{case}/demonstrations"] = _sha(d.to_record() for d in ds.demonstrations)
        stages = curricula.build("proactive", ds, CurriculumConfig())
        out[f"{case}/proactive_rows"] = _sha(r for st in stages for r in st.rows)
    out["algorithms/input_kinds"] = _input_kinds()
    out.update(_imported())
    return out


#: a user's functions file: two clashing names (one renamed), a bad line, a wrong given output
FUNCTIONS = [
    {"code": "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)", "inputs": ["3", "4", "5"]},
    {"code": "def f(xs):\n    return sorted(xs)", "inputs": ["[3, 1]", "[]", "[2, 2, 0]"], "id": "s"},
    {"code": "def g(a, b):\n    return a * b", "inputs": ["2, 3", "4, 5", "6, 7"],
     "outputs": ["6", "20", "41"]},
    {"code": "def h(s):\n    return s[::-1]", "inputs": ["'ab'", "''", "'xyz'"], "name": "h"},
    {"inputs": ["1"]},
]


def _imported() -> dict[str, str]:
    import tempfile
    from pathlib import Path

    from pbb.data.importers import import_functions
    from pbb.domains.imported import ImportedConfig
    from pbb.jsonio import dumps

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "functions.jsonl"
        path.write_text("".join(dumps(r) + "\n" for r in FUNCTIONS))
        ds, report = import_functions(path, test_inputs=1, eval_fraction=0.5, seed=0,
                                      cfg=ImportedConfig(workers=1), progress=False)
    return {"imported/behaviours": _sha(b.to_record() for b in ds.behaviours),
            "imported/demonstrations": _sha(d.to_record() for d in ds.demonstrations),
            "imported/report": _sha(report)}


def _input_kinds() -> str:
    """Every input kind of the algorithm library, 20 draws each (a small data set uses few)."""
    import random

    from pbb.domains.algorithms.inputs import draw
    from pbb.domains.algorithms.library import LIBRARY

    kinds = sorted({spec.inputs for spec in LIBRARY})
    return _sha({"kind": k, "draws": repr([draw(k, random.Random(i)) for i in range(20)])}
                for k in kinds)


if __name__ == "__main__":
    json.dump(fingerprints(), sys.stdout, indent=1, sort_keys=True)
    print()
