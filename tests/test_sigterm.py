"""SIGTERM (``kill PID``, ``timeout``, ``docker stop``, a scheduler) stops pbb as Ctrl-C does:
the same clean-up, the same line saying how to resume, exit code 143; a sweep passes it on to
the points it started instead of leaving them running, and a ``vllm serve`` being started is
stopped with it."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from pbb import interrupts
from tests.test_backends import _vllm_config
from tests.test_reliability import call


def terminated(*a, **k):
    """Stands in for a command's work: a SIGTERM to this process, as ``kill PID`` sends."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the handler interrupts this at once
    raise AssertionError("SIGTERM did not interrupt the command")


def test_sigterm_in_a_run_says_how_to_resume_and_exits_143(sigterm_restored, tmp_path,
                                                           monkeypatch, capsys):
    from pbb.experiments import run as run_mod

    monkeypatch.setattr(run_mod, "run", terminated)
    code, err = call(monkeypatch, capsys, "run", "configs/quickstart.yaml", "--smoke",
                     "--out", tmp_path / "x")
    assert (code, err) == (143, "stopped by SIGTERM; run the same command again to resume\n")
    # a second SIGTERM while the first one's clean-up runs is ignored, not a second interrupt
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


@pytest.mark.parametrize("args, patched, resumes", [
    (["--plan"], "plan_claims", False),
    (["--no-run"], "run_claims", False),
    (["--no-run", "--run"], "run_claims", True),  # the last of the two holds: it runs
])
def test_a_stop_speaks_of_resuming_only_where_something_ran(sigterm_restored, monkeypatch, capsys,
                                                            args, patched, resumes):
    # `pbb claims --plan` or `--no-run` trains nothing: "resume the claims (finished points ...
    # kept)" would tell its user that a run had started
    from pbb.experiments import claims as claims_mod

    monkeypatch.setattr(claims_mod, patched, terminated)
    code, err = call(monkeypatch, capsys, "claims", *args, "--only", "proactive_vs_control")
    said = ("run the same command again to resume the claims (finished points and trained "
            "stages are kept)" if resumes else "nothing was half-written (run the command again)")
    assert (code, err) == (143, f"stopped by SIGTERM; {said}\n")


@pytest.mark.parametrize("then, after, finished, code", [
    # the same Ctrl-C again (the terminal's, then the sweep's passing it on): clean-up goes on
    (signal.SIGINT, 0.0, True, 130),
    # a SIGTERM while Ctrl-C's clean-up runs: ignored, and the exit code stays Ctrl-C's
    (signal.SIGTERM, 0.0, True, 130),
    # Ctrl-C pressed again later: the way to give up on a clean-up that hangs
    (signal.SIGINT, 0.5, False, 130),
])
def test_a_stop_signal_during_the_clean_up_of_a_ctrl_c(sigterm_restored, tmp_path, monkeypatch,
                                                       capsys, then, after, finished, code):
    from pbb.experiments import run as run_mod

    monkeypatch.setattr(interrupts, "REPEAT_SECONDS", 0.3)
    # as from a terminal: under a background shell (nohup, CI) SIGINT starts out ignored, and
    # pbb leaves it so (the fixture puts the old handler back)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cleaned = []

    def interrupted(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)  # the handler interrupts this at once
        finally:  # the clean-up (a checkpoint, a server stopped), signalled again meanwhile
            time.sleep(after)
            os.kill(os.getpid(), then)
            time.sleep(0.2)
            cleaned.append(True)

    monkeypatch.setattr(run_mod, "run", interrupted)
    got, err = call(monkeypatch, capsys, "run", "configs/quickstart.yaml", "--smoke",
                    "--out", tmp_path / "x")
    assert (got, err) == (code, "interrupted; run the same command again to resume\n")
    assert cleaned == ([True] if finished else [])


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(what, seconds: float):
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


@pytest.mark.slow
def test_sigterm_to_a_parallel_sweep_stops_its_points_too(tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "pbb", "sweep", "configs/arithmetic_effect.yaml", "--smoke",
            "--jobs", "2", "--set", "sweep.grid.seed=[0]",
            "--set", "sweep.points=[{curricula: [proactive]}, {curricula: [stage1_only]}]",
            "--out", str(out), "--no-progress"]
    # started as from a background shell: SIGINT ignored, in the sweep and (inherited) its points
    sweep = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        def started():
            jobs = json.loads((out / "jobs.json").read_text()) if (out / "jobs.json").is_file() \
                else {}
            logs = [out / j["log"] for j in jobs.values()]
            # each point at work (its first line printed: past start-up, its handler installed)
            return jobs if len(jobs) == 2 and all(f.is_file() and f.stat().st_size for f in logs) \
                else None

        jobs = _wait_for(started, 180)
        sweep.send_signal(signal.SIGTERM)  # the sweep's process alone, as `kill PID` does
        _, err = sweep.communicate(timeout=60)
        assert sweep.returncode == 143, err
        assert any(line.startswith("stopped by SIGTERM; run the same command again to resume "
                                   "the sweep") for line in err.splitlines()), err
        for job in jobs.values():
            assert not _alive(job["pid"]), job
            # each point stopped itself, cleanly, on the SIGTERM passed on (not killed after 30 s)
            assert "stopped by SIGTERM; run the same command again to resume" in \
                (out / job["log"]).read_text().splitlines()
    finally:  # whatever is left of the sweep's process group (its points are in it)
        try:
            os.killpg(sweep.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_vllm_server_interrupted_while_it_starts_is_stopped(tmp_path, monkeypatch):
    from pbb.evaluation import served

    exe = tmp_path / "vllm"  # a server that never answers /health
    exe.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    exe.chmod(0o755)
    server = served.VLLMServer(_vllm_config(**{"eval.vllm.executable": str(exe)}), tmp_path,
                               tmp_path / "vllm.log")

    def interrupted(seconds):  # Ctrl-C in the first wait for /health
        raise KeyboardInterrupt

    # the served module's clock only (Popen.wait, other threads keep the real time.sleep)
    monkeypatch.setattr(served, "time", types.SimpleNamespace(time=time.time, sleep=interrupted))
    with pytest.raises(KeyboardInterrupt), server:
        pass
    assert server.proc.poll() is not None  # stopped, not left holding a GPU


def test_an_interrupted_served_evaluation_sends_no_more_requests():
    # Ctrl-C or SIGTERM while answers come back: the requests still queued are dropped, not
    # sent one by one before the process can stop (and stop the vllm server it started)
    import threading

    from pbb.evaluation.generators import OpenAIGenerator

    sent, lock = [], threading.Lock()

    class Answers(OpenAIGenerator):
        def one(self, prompt, max_new_tokens):
            with lock:
                sent.append(prompt)
            time.sleep(0.05)
            return "Answer: 1"

    def interrupted(batch):
        raise KeyboardInterrupt

    generator = Answers(client=None, model="m", concurrency=2)
    with pytest.raises(KeyboardInterrupt):
        generator.generate([f"q{i}" for i in range(40)], max_new_tokens=8, progress=False,
                           on_batch=interrupted)
    time.sleep(0.3)
    assert len(sent) <= 4, sent  # the two running when it stopped, and at most two more


def test_an_interrupted_served_evaluation_does_not_wait_for_the_requests_in_flight():
    # a long CoT answer in flight must not hold the point past the sweep's wait (it would be
    # killed before it stops the vllm server it started): the interrupt goes on at once
    import threading

    from pbb.evaluation.generators import OpenAIGenerator

    release, finished = threading.Event(), []

    class Answers(OpenAIGenerator):
        def one(self, prompt, max_new_tokens):
            if prompt != "q0":
                release.wait(timeout=30)  # a request the server is still answering
            finished.append(prompt)
            return "Answer: 1"

    def interrupted(batch):
        raise KeyboardInterrupt

    generator = Answers(client=None, model="m", concurrency=2)
    try:
        with pytest.raises(KeyboardInterrupt):
            generator.generate(["q0", "q1", "q2"], max_new_tokens=8, progress=False,
                               on_batch=interrupted)
        assert finished == ["q0"]  # q1 still in flight when the interrupt reached the caller
    finally:
        release.set()


def test_a_process_stopped_in_a_served_evaluation_exits_at_once(tmp_path):
    # the requests in flight must not hold the process's exit either (a thread pool's workers
    # are joined when Python exits): a sweep would kill the point before it stopped its server
    script = tmp_path / "stopped.py"
    script.write_text("""
import sys, time
from pbb.evaluation.generators import OpenAIGenerator

class Answers(OpenAIGenerator):
    def one(self, prompt, max_new_tokens):
        if prompt != "q0":
            time.sleep(60)  # a long answer the server is still writing
        return "Answer: 1"

def interrupted(batch):
    raise KeyboardInterrupt

try:
    Answers(client=None, model="m", concurrency=4).generate(
        [f"q{i}" for i in range(8)], max_new_tokens=8, progress=False, on_batch=interrupted)
except KeyboardInterrupt:
    sys.exit(130)
""")
    start = time.time()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130, done.stderr
    assert time.time() - start < 30, "the exit waited for the requests in flight"


def test_a_stop_that_arrives_in_a_finalizer_is_not_lost(sigterm_restored):
    # raised inside a __del__, the interrupt would be printed and dropped ("Exception ignored
    # in"), and with later SIGTERMs ignored the run would go on to the end
    interrupts.install()

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs here, inside __del__

    with pytest.raises(KeyboardInterrupt):
        Finalized()  # dropped at once: __del__ runs
        time.sleep(5)  # the stop must come here
    assert interrupts.received == signal.SIGTERM


def test_a_stop_inside_deferred_work_waits_for_the_work_and_is_taken_once(sigterm_restored):
    # an optimizer step must not be cut between its parameters' updates: the stop is kept until
    # the step is whole, then the step's owner takes it (and a second run in the process is free)
    interrupts.install()
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler has run: not raised
        finished = True
    assert finished and interrupts.take_pending() and not interrupts.take_pending()
    assert interrupts.exit_code() == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # later SIGTERMs: the same stop


@pytest.mark.parametrize("enabled, again, raised", [
    (False, None, True),  # a plain block (several processes): the stop interrupts at once
    (True, 0.0, False),  # the same Ctrl-C again at once (a terminal's, passed on): still kept
    (True, 0.5, True),  # Ctrl-C pressed again later: the way to give up on a step that hangs
])
def test_deferred_work_can_still_be_interrupted(sigterm_restored, monkeypatch, enabled, again,
                                                raised):
    monkeypatch.setattr(interrupts, "REPEAT_SECONDS", 0.3)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal
    interrupts.install()
    got = False
    try:
        with interrupts.deferred(enabled):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, at once
            if again is not None:
                time.sleep(again)
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
    except KeyboardInterrupt:
        got = True
    assert got == raised
    assert interrupts.take_pending() == (enabled and not raised)  # raised: nothing left over
