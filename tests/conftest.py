import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pbb import data

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the rates the suite's tiny runs record go to a file of its own (inherited by the pbb
# processes tests start), never into the user's ~/.cache/pbb/rates.json
os.environ["PBB_RATES"] = str(Path(tempfile.mkdtemp(prefix="pbb-test-rates-")) / "rates.json")
# and its plans read what it measured only, not the rates shipped for a fresh machine
os.environ["PBB_REFERENCE_RATES"] = "none"


def free_port() -> int:
    """A localhost port nobody listens on now (a launcher's or a server's default may be taken)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``pbb`` in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "pbb", *args], capture_output=True,
                          text=True, cwd=cwd)


def script(name: str):
    """``scripts/<name>.py`` loaded as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loaded_in_fresh_process(code: str, packages=("torch", "transformers")) -> list[str]:
    """The modules of ``packages`` (and their submodules) loaded once ``code`` ran in a fresh
    Python: what an import or a call pulls in, measured where nothing was imported before."""
    import json

    probe = (f"{code}\nimport json, sys\npackages = {tuple(packages)!r}\n"
             "print(json.dumps(sorted(m for m in sys.modules if any(m == p or "
             "m.startswith(p + '.') for p in packages))))\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def arith_set(tmp_path_factory):
    """A moderate arithmetic data set (300 behaviours x 20 demos) saved to disk."""
    out = tmp_path_factory.mktemp("arith") / "set"
    ds = data.generate("arithmetic", behaviours=300, demos=20, test_inputs=8, eval_fraction=0.4,
                       seed=7, progress=False,
                       options={"max_statements": 6, "branch_prob": 0.3, "loop_prob": 0.3,
                                "expr_depth": 2, "input_min": -15, "input_max": 25})
    data.save(ds, out)
    return data.load(out)


@pytest.fixture(scope="module")
def tiny():
    """The tiny random Llama and its tokenizer (SFT and packing tests)."""
    from pbb.models import load_tokenizer, resolve_model_path

    path = resolve_model_path("tiny-random")
    return path, load_tokenizer(path)


@pytest.fixture(scope="module")
def rows():
    """A few declarative, direct and CoT rows of a tiny arithmetic data set."""
    from pbb.rows.curricula import declarative_rows, demo_rows

    ds = data.generate("arithmetic", behaviours=4, demos=2, test_inputs=1, eval_fraction=0.5,
                       seed=0, progress=False)
    return declarative_rows(ds, ds.behaviours, 2) + demo_rows(ds, ds.split("train"), ["direct", "cot"])


class Canned:
    """A Generator (pbb.evaluation.generators) that answers each prompt with ``answer(prompt)``,
    handing every answer on at once; ``asked`` records the prompts of each call."""

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def generate(self, prompts, *, max_new_tokens, desc="generate", progress=True, on_batch=None):
        self.asked.append(list(prompts))
        out = [self.answer(p) for p in prompts]
        if on_batch:
            on_batch(list(enumerate(out)))
        return out


# pbb collects garbage after every stage and evaluation (release_memory in
# pbb.training.precision): a full collection scans every object the process tracks, and this
# process holds the whole suite's imports and fixtures, so each took ~0.45 s here against ~0.18 s
# in a `pbb run` (the smoke-size claims fixture spent a quarter of its time in them). What is
# alive once the tests are collected, and again after each test module, is moved out of the
# collector's scans (gc.freeze): modules, functions and session fixtures, which live to the end.
def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _frozen_survivors():
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture
def sigterm_restored(monkeypatch):
    """pbb's ``main`` (or a test) installs its SIGTERM and SIGINT handlers in this process: put
    the old ones back, and the stop they saw."""
    import signal

    from pbb import interrupts

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for name in ("received", "_stopped_at", "_pending"):
        monkeypatch.setattr(interrupts, name, getattr(interrupts, name))
    yield
    for s, handler in old.items():
        signal.signal(s, handler)
