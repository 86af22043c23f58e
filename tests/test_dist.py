"""One run across processes, two CPU processes (gloo): the same training as one process, every
query answered once, files written by one process. Launched with torch's launcher
(`torch.distributed.run`), which sets the same environment `accelerate launch --multi_gpu`
does on a GPU machine; accelerate's own CPU multi-process launch goes through MPI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pbb.jsonio import read_jsonl
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

ARGS = ["configs/quickstart.yaml", "--smoke", "--no-progress",
        "--set", 'curricula=["proactive","stage1_only"]', "--set", "train.max_steps=3"]


def _launch(out: Path) -> subprocess.CompletedProcess:
    import socket

    with socket.socket() as s:  # a free port: the launcher's default one may be taken
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port), "-m", "pbb.cli", "run", *ARGS,
                           "--out", str(out)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    two = _launch(d / "two")
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    one = run_cli("run", *ARGS, "--out", str(d / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    return d / "one", d / "two", two


def test_two_processes_train_the_one_process_update(runs):
    one, two, _ = runs
    stages = sorted(p.name for p in (one / "stages").iterdir())
    assert stages == sorted(p.name for p in (two / "stages").iterdir())  # same stage keys
    for name in stages:
        a = [r for r in read_jsonl(one / "stages" / name / "metrics.jsonl") if "loss" in r]
        b = [r for r in read_jsonl(two / "stages" / name / "metrics.jsonl") if "loss" in r]
        assert [r["step"] for r in b] == [r["step"] for r in a] == [1, 2, 3]  # logged once each
        for x, y in zip(a, b):  # rows split over processes, gradients summed: the same step
            assert y["loss"] == pytest.approx(x["loss"], rel=1e-4)
            assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-3)
            assert (y["rows"], y["tokens"]) == (x["rows"], x["tokens"])
        done = json.loads((two / "stages" / name / "done.json").read_text())
        assert done["processes"] == 2


def test_every_query_is_answered_and_written_once(runs):
    one, two, _ = runs
    for cur in ("proactive", "stage1_only"):
        for mode in ("recall", "cot"):
            d = two / "eval" / cur / mode
            assert sorted(p.name for p in d.iterdir()) == ["samples.jsonl"]  # partials merged
            a, b = read_jsonl(one / "eval" / cur / mode / "samples.jsonl"), read_jsonl(d / "samples.jsonl")
            assert [(s["behaviour_id"], s["input"]) for s in b] == \
                [(s["behaviour_id"], s["input"]) for s in a]
            same = sum(x["completion"] == y["completion"] for x, y in zip(a, b))
            assert same >= 0.9 * len(a)  # the same weights up to float summation order
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2


def test_one_process_speaks_and_writes(runs):
    _, two, launched = runs
    said = launched.stdout + launched.stderr
    # proactive's two stages, each announced once (not once per process); stage1_only reuses one
    assert said.count("training on") == 2 and said.count("done earlier") == 1
    assert said.count("wrote ") == 1
