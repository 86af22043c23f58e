"""What pbb promises a user about their files and its labels: it writes, replaces and deletes
only folders it wrote (of the right kind), every check comes before the first write, undecodable
input is one line, a summary names the data set that actually ran, Ctrl-C says how to resume."""

import json
import sys
from pathlib import Path

import pytest

from pbb import cli as cli_mod
from pbb import data
from pbb.config import load_config
from pbb.errors import PbbError
from pbb.folders import MARKER

GRAMMARS = 'grammar g1\nS -> "a" S "b" | "ab"\n\ngrammar g2\nS -> "x" | "y" S\n'
FUNCTIONS = [{"code": "def f(n):\n    return n + 1", "inputs": ["1", "2", "3"]},
             {"code": "def g(n):\n    return n * 2", "inputs": ["1", "2", "3"]}]


def call(monkeypatch, capsys, *args) -> tuple[int, str]:
    """``pbb ARGS`` in this process (as the console script runs it): exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["pbb", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli_mod.main()
    return e.value.code, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def inputs(tmp_path):
    """Small real inputs for every command: a data set, a functions file, a grammar file,
    completions."""
    ds_dir = tmp_path / "inputs" / "set"
    data.save(data.generate("arithmetic", behaviours=6, demos=2, test_inputs=2,
                            eval_fraction=0.5, seed=0, progress=False), ds_dir)
    funcs = tmp_path / "inputs" / "functions.jsonl"
    funcs.write_text("".join(json.dumps(f) + "\n" for f in FUNCTIONS))
    grammars = tmp_path / "inputs" / "grammars.txt"
    grammars.write_text(GRAMMARS)
    completions = tmp_path / "inputs" / "completions.jsonl"
    completions.write_text(json.dumps({"custom_id": "direct|x|0", "completion": "1"}) + "\n")
    return {"set": ds_dir, "functions": funcs, "grammars": grammars, "completions": completions}


def commands(i: dict, out: Path) -> dict[str, list]:
    """Every command that writes an --out folder, and whether it takes --force."""
    return {
        "run": ["run", "configs/quickstart.yaml", "--smoke", "--out", out],
        "sweep": ["sweep", "configs/arithmetic_effect.yaml", "--smoke", "--out", out],
        "data generate": ["data", "generate", "arithmetic", "--behaviours", "4", "--out", out],
        "data import": ["data", "import", i["functions"], "--out", out],
        "data import-grammars": ["data", "import-grammars", i["grammars"], "--out", out],
        "export": ["export", "hf", i["set"], "--out", out],
        "score": ["score", i["set"], i["completions"], "--out", out, "--curriculum", "untuned"],
    }


FORCE = {"data generate", "data import", "data import-grammars", "export", "score"}


@pytest.mark.parametrize("command", ["run", "sweep", "data generate", "data import",
                                     "data import-grammars", "export", "score"])
def test_a_users_folder_survives_every_command_with_and_without_force(
        command, inputs, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "notes.txt").write_text("three weeks of notes\n")
    (mine / "summary.json").write_text('{"my": "results"}\n')
    before = snapshot(mine)
    args = commands(inputs, mine)[command]
    for extra in ([], ["--force"]) if command in FORCE else ([],):
        code, err = call(monkeypatch, capsys, *args, *extra)
        assert code == 1, err
        assert "not a folder pbb wrote" in err and err.count("\n") == 1, err
        assert snapshot(mine) == before  # byte for byte, nothing added either
        assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "mine"]


def test_force_replaces_only_a_pbb_folder_of_the_same_kind(inputs, tmp_path, monkeypatch,
                                                          capsys):
    out = tmp_path / "exported"
    code, err = call(monkeypatch, capsys, "export", "hf", inputs["set"], "--out", out)
    assert code == 0, err
    assert json.loads((out / MARKER).read_text()) == {"written_by": "pbb", "kind": "export"}
    before = snapshot(out)
    # a data command may not replace an export, --force or not
    code, err = call(monkeypatch, capsys, "data", "generate", "arithmetic", "--out", out, "--force")
    assert code == 1 and "holds a pbb export folder, not a data folder" in err, err
    assert snapshot(out) == before
    # the same kind: refused without --force, replaced with it
    code, err = call(monkeypatch, capsys, "export", "openai", inputs["set"], "--out", out)
    assert code == 1 and "--force" in err
    code, err = call(monkeypatch, capsys, "export", "openai", inputs["set"], "--out", out, "--force")
    assert code == 0, err
    assert (out / "openai").is_dir() and not (out / "hf").exists()


def test_a_run_folder_is_marked_and_resumes_but_a_run_never_takes_a_data_set_folder(
        inputs, tmp_path, monkeypatch, capsys):
    code, err = call(monkeypatch, capsys, "run", "configs/quickstart.yaml", "--smoke", "--out",
                     inputs["set"])
    assert code == 1 and "holds a pbb data folder, not a run folder" in err, err


# --- the summary names the data set that ran ------------------------------------------------

UNTUNED = {"curricula": ["untuned"], "eval.modes": ["direct"]}


def small_run_config(**extra):
    return load_config(Path("configs/quickstart.yaml"), {**UNTUNED, **extra}, smoke=True)


def test_a_data_block_that_disagrees_with_data_path_is_refused_before_any_write(
        inputs, tmp_path):
    from pbb.experiments.run import run

    out = tmp_path / "r"
    cfg = small_run_config(**{"data.path": str(inputs["set"]), "data.domain": "ciphers",
                              "data.behaviours": 50, "data.test_inputs": 2})
    with pytest.raises(PbbError) as e:
        run(cfg, out, progress=False)
    message = str(e.value)
    assert "domain (\"ciphers\" in the config, \"arithmetic\" in the data set)" in message
    assert "behaviours (50 in the config, 6 in the data set)" in message
    assert "test_inputs" not in message  # 2 in both: agreeing keys are not named
    assert not out.exists()


def test_left_out_data_keys_come_from_the_data_set_and_the_summary_names_it(inputs, tmp_path):
    import yaml

    from pbb.experiments.run import run

    out = tmp_path / "r"
    raw = yaml.safe_load(Path("configs/quickstart.yaml").read_text())
    raw["data"] = {"path": str(inputs["set"])}  # the data block left out
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "c.yaml", UNTUNED, smoke=True)
    summary = run(cfg, out, progress=False)
    man = json.loads((inputs["set"] / "manifest.json").read_text())
    assert summary["domain"] == "arithmetic"
    assert summary["data"]["counts"] == man["counts"]
    assert summary["data"]["sha256"] == {k: v["sha256"] for k, v in man["files"].items()}
    assert summary["data"]["path"] == str(inputs["set"].resolve())
    written = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert (written["domain"], written["behaviours"], written["demos"]) == ("arithmetic", 6, 2)
    assert man["files"]["behaviours.jsonl"]["sha256"][:12] in (out / "report.md").read_text()
    # the same command resumes (the filled-in config is the one it wrote)
    assert run(cfg, out, progress=False)["results"] == summary["results"]


def test_a_run_folders_data_that_disagrees_with_its_config_is_refused(tmp_path):
    from pbb.experiments.run import run

    out = tmp_path / "r"
    cfg = small_run_config()
    run(cfg, out, progress=False)
    other = data.generate("ciphers", behaviours=8, demos=2, test_inputs=2, eval_fraction=0.5,
                          seed=0, progress=False)
    data.save(other, out / "data", force=True)
    with pytest.raises(PbbError, match=r"r/data: the config's data block disagrees with this "
                                       r"data set: domain \(\"arithmetic\" in the config"):
        run(cfg, out, progress=False)


# --- every check before the first write -----------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    ({"data.path": "no/such/set"}, "data.path no/such/set: not a data set directory"),
    ({"data.domain": "grammars", "data.options": {}, "data.instruction_format": "nl"},
     "data.instruction_format: nl needs a description of every behaviour"),
    ({"model": "no-such-model"}, "no-such-model"),
    ({"train.report_to": ["wandb"], "curricula": ["proactive"]}, "wandb"),
])
def test_a_failed_start_writes_nothing_and_the_corrected_rerun_runs(extra, message, tmp_path):
    from pbb.experiments.run import run

    out = tmp_path / "r"
    bad = small_run_config(**extra)
    try:
        run(bad, out, progress=False)
    except PbbError as e:
        assert message in str(e)
    else:  # wandb may be installed on some machines: then this row has nothing to refuse
        pytest.skip("nothing to refuse here")
    assert not out.exists()
    assert run(small_run_config(), out, progress=False)["results"]


def test_a_run_that_failed_before_any_work_takes_the_corrected_config(tmp_path, monkeypatch):
    from pbb.experiments import run as run_mod

    out = tmp_path / "r"

    def crash(*a, **k):
        raise RuntimeError("the machine fell over")

    monkeypatch.setattr(run_mod, "evaluate_curriculum", crash)
    with pytest.raises(RuntimeError):
        run_mod.run(small_run_config(**{"data.behaviours": 6}), out, progress=False)
    assert (out / "config.yaml").is_file()  # written, then nothing was trained or evaluated
    monkeypatch.undo()
    summary = run_mod.run(small_run_config(), out, progress=False)
    assert summary["data"]["counts"]["behaviours"] == 8  # the corrected config's data, regenerated


# --- undecodable bytes: one line naming file and line ----------------------------------------

def _spoil(path: Path, line: int) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1][:5] + b"\xff\xfe" + lines[line - 1][5:]
    path.write_bytes(b"\n".join(lines))


def test_undecodable_bytes_are_one_line_in_every_reader(inputs, tmp_path, monkeypatch, capsys):
    cases = []
    ds = tmp_path / "set"
    data.save(data.load(inputs["set"]), ds)
    _spoil(ds / "demonstrations.jsonl", 3)
    cases.append((["data", "show", ds], f"{ds / 'demonstrations.jsonl'}:3: not UTF-8"))
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"name: x\nmodel: tiny-random\nseed: \xff\n")
    cases.append((["run", cfg, "--out", tmp_path / "r"], f"{cfg}:3: not UTF-8"))
    _spoil(inputs["functions"], 2)
    cases.append((["data", "import", inputs["functions"], "--out", tmp_path / "i"],
                  f"{inputs['functions']}:2: not UTF-8"))
    inputs["grammars"].write_bytes(b'grammar g\nS -> "\xe9"\n')
    cases.append((["data", "import-grammars", inputs["grammars"], "--out", tmp_path / "g"],
                  f"{inputs['grammars']}:2: not UTF-8"))
    _spoil(inputs["completions"], 1)
    cases.append((["score", inputs["set"], inputs["completions"], "--out", tmp_path / "s",
                   "--curriculum", "untuned"], f"{inputs['completions']}:1: not UTF-8"))
    for args, message in cases:
        code, err = call(monkeypatch, capsys, *args)
        assert code == 1 and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "inputs", "set"]


# --- Ctrl-C says what it did ----------------------------------------------------------------

@pytest.mark.parametrize("command, target, message", [
    (["run", "configs/quickstart.yaml", "--smoke"], "pbb.experiments.run.run",
     "interrupted; run the same command again to resume\n"),
    (["sweep", "configs/arithmetic_effect.yaml", "--smoke"], "pbb.experiments.sweep.run_sweep",
     "interrupted; run the same command again to resume the sweep"),
    # a plan runs nothing: no "resume", which would tell its user that a run had started
    (["plan", "configs/arithmetic_effect.yaml"], "pbb.experiments.plan.plan_sweep",
     "interrupted; nothing was half-written (run the command again)\n"),
])
def test_ctrl_c_says_how_to_resume_and_exits_130(command, target, message, tmp_path,
                                                monkeypatch, capsys):
    module, _, name = target.rpartition(".")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name,
                        interrupted)
    code, err = call(monkeypatch, capsys, *command, "--out", tmp_path / "x")
    assert code == 130 and err.startswith(message) and err.count("\n") == 1, err


@pytest.mark.parametrize("command, config", [("run", "configs/quickstart.yaml"),
                                             ("plan", "configs/quickstart.yaml"),
                                             ("plan", "configs/arithmetic_effect.yaml"),
                                             ("sweep", "configs/arithmetic_effect.yaml")])
def test_a_users_folder_given_as_the_stage_store_is_refused_before_any_work(
        command, config, tmp_path, monkeypatch, capsys):
    # every stage trained into a --stages-root adds a folder of weights to it: a folder holding
    # anything but stage folders is refused, in one line naming what it holds, nothing written
    mine = tmp_path / "mine"
    (mine / "stage1-0123456789ab").mkdir(parents=True)  # a stage folder may sit beside...
    (mine / "notes.txt").write_text("three weeks of notes\n")  # ...but not a user's file
    before = snapshot(mine)
    code, err = call(monkeypatch, capsys, command, config, "--smoke", "--out", tmp_path / "out",
                     "--stages-root", mine)
    assert code == 1, err
    assert f"--stages-root {mine}: holds notes.txt, not stage folders only" in err, err
    assert err.count("\n") == 1, err
    assert snapshot(mine) == before and not (tmp_path / "out").exists()


def test_a_stage_store_is_new_or_holds_stage_folders_only(tmp_path):
    from pbb.folders import check_stage_store, mark

    assert check_stage_store(tmp_path / "new") == tmp_path / "new"  # made when a stage trains
    store = tmp_path / "stages"
    # a custom stage's name may hold dashes and spaces; a stage in training holds its lock
    for name in ("stage1-0123456789ab", "activation_rl-e27c5d0aee42", "warm-up 1-00112233aabb"):
        (store / name).mkdir(parents=True)
    (store / "stage1-0123456789ab" / ".lock").write_text("")
    assert check_stage_store(store) == store
    (store / "stage1-0123456789ab.tar").write_text("")  # not a folder
    with pytest.raises(PbbError, match="holds stage1-0123456789ab.tar"):
        check_stage_store(store)
    run = tmp_path / "a-run"  # a run's own folder given in place of its stages/
    (run / "stages").mkdir(parents=True)
    mark(run, "run")
    with pytest.raises(PbbError, match=r"a pbb run folder: its stages are in .*a-run/stages"):
        check_stage_store(run)
    (tmp_path / "file").write_text("")
    with pytest.raises(PbbError, match="exists and is not a directory"):
        check_stage_store(tmp_path / "file")


def test_pbb_sweep_hands_its_stage_store_to_the_sweep_for_parallel_points_too(
        tmp_path, monkeypatch, capsys):
    from pbb.experiments import executors
    from pbb.experiments import sweep as sweep_mod

    given = []
    store = tmp_path / "claims" / "stages"
    with monkeypatch.context() as patched:
        patched.setattr(sweep_mod, "run_sweep", lambda *a, **kw: given.append(kw) or {})
        code, err = call(patched, capsys, "sweep", "configs/arithmetic_effect.yaml", "--smoke",
                         "--out", tmp_path / "out", "--stages-root", store, "--jobs", "2")
    assert code == 0, err
    assert [(kw["stages_root"], kw["jobs"]) for kw in given] == [(store, 2)]
    # the real sweep: each point's process is told the shared store, not the sweep's own
    started = []
    monkeypatch.setattr(executors, "run_local", lambda pts, out, jobs, per, stages=None,
                        after_point=None: started.append((len(pts), jobs, stages)))
    code, err = call(monkeypatch, capsys, "sweep", "configs/arithmetic_effect.yaml", "--smoke",
                     "--out", tmp_path / "out2", "--stages-root", store, "--jobs", "2")
    assert code == 0, err
    assert len(started) == 1 and started[0][1:] == (2, store) and started[0][0] > 1


# --- one process a folder -------------------------------------------------------------------

def test_a_second_process_in_a_busy_folder_is_refused_before_it_writes(tmp_path, monkeypatch):
    # a run folder with no stage or evaluation yet takes a corrected config; while another
    # process works there (a sweep point waiting for a shared stage), a second one must not
    # rewrite its config and data before it finds the folder busy
    import contextlib

    from filelock import FileLock

    from pbb.experiments import run as run_mod
    from pbb.experiments import sweep as sweep_mod
    from pbb.store import RunStore

    out = tmp_path / "r"
    with contextlib.ExitStack() as held:
        run_mod.start_run(small_run_config(), RunStore(out), held)
    before = snapshot(out)
    with FileLock(str(out / ".lock")), \
            pytest.raises(PbbError, match="another pbb process is working in this run folder"):
        run_mod.run(small_run_config(seed=5), out, progress=False)
    assert snapshot(out) == before

    sweep = tmp_path / "s"  # a sweep grown by a point while it runs: its sweep.json unchanged
    ran = []
    monkeypatch.setattr(run_mod, "run", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(sweep_mod, "report", lambda out: {})
    grid = {"sweep.grid.seed": [0]}
    sweep_mod.run_sweep(Path("configs/arithmetic_effect.yaml"), sweep, grid, smoke=True)
    before = snapshot(sweep)
    with FileLock(str(sweep / ".lock")), \
            pytest.raises(PbbError, match="another pbb process is working in this sweep folder"):
        sweep_mod.run_sweep(Path("configs/arithmetic_effect.yaml"), sweep,
                            {"sweep.grid.seed": [0, 1]}, smoke=True)
    assert snapshot(sweep) == before and len(ran) == len(json.loads(
        (sweep / "sweep.json").read_text())["points"])


def test_the_refusal_names_the_process_that_holds_the_folder(tmp_path):
    # "another pbb process" alone leaves the user hunting through ps for which one; the holder
    # writes who it is, and takes the record away when it lets go
    import os

    from pbb.store import folder_lock

    with folder_lock(tmp_path, "run"):
        with pytest.raises(PbbError, match=rf"another pbb process \(pid {os.getpid()} on .+ "
                                           r"since .+: .+\) is working in this run folder"):
            with folder_lock(tmp_path, "run"):
                pass
        assert (tmp_path / ".lock.json").is_file()
    assert not (tmp_path / ".lock.json").exists()
    with folder_lock(tmp_path, "run"):  # free again once let go
        pass


def test_a_failed_start_in_an_empty_folder_leaves_it_usable(tmp_path, monkeypatch):
    # `mkdir X; pbb run bad.yaml --out X`: the lock is taken before the checks fail, and its
    # file stays on Unix; the corrected command must still find X empty, not "not pbb's"
    import contextlib

    from pbb.experiments import run as run_mod
    from pbb.store import RunStore

    out = tmp_path / "x"
    out.mkdir()

    def bad(cfg):
        raise PbbError("model: not found")

    with monkeypatch.context() as m, contextlib.ExitStack() as held:
        m.setattr(run_mod, "check_before_work", bad)
        with pytest.raises(PbbError, match="model: not found"):
            run_mod.start_run(small_run_config(), RunStore(out), held)
    assert {p.name for p in out.iterdir()} <= {".lock"}
    with contextlib.ExitStack() as held:
        run_mod.start_run(small_run_config(), RunStore(out), held)
    assert (out / "config.yaml").is_file()


def test_a_folder_another_process_made_after_the_checks_is_not_written(tmp_path, monkeypatch):
    # two commands with the same new --out: both pass the checks before either made it; the
    # second must find the first's lock before it writes its config, data or sweep.json there
    import contextlib

    from filelock import FileLock

    from pbb.experiments import run as run_mod
    from pbb.experiments import sweep as sweep_mod
    from pbb.store import RunStore

    def first_makes(folder: Path, after):
        def wrapped(*a, **k):
            result = after(*a, **k)
            folder.mkdir(exist_ok=True)
            held.enter_context(FileLock(str(folder / ".lock")))
            return result
        return wrapped

    out = tmp_path / "r"
    with contextlib.ExitStack() as held, contextlib.ExitStack() as mine, \
            monkeypatch.context() as m:
        m.setattr(run_mod, "open_data", first_makes(out, run_mod.open_data))
        with pytest.raises(PbbError, match="another pbb process is working in this run folder"):
            run_mod.start_run(small_run_config(), RunStore(out), mine)
    assert {p.name for p in out.iterdir()} == {".lock"}

    sweep = tmp_path / "s"
    with contextlib.ExitStack() as held, monkeypatch.context() as m:
        m.setattr(run_mod, "check_before_work", first_makes(sweep, run_mod.check_before_work))
        with pytest.raises(PbbError, match="another pbb process is working in this sweep folder"):
            sweep_mod.run_sweep(Path("configs/arithmetic_effect.yaml"), sweep,
                                {"sweep.grid.seed": [0]}, smoke=True)
    assert {p.name for p in sweep.iterdir()} == {".lock"}


@pytest.mark.parametrize("raised", [OSError(28, "No space left on device"),
                                    PbbError("runs/x: holds another run")])
def test_an_error_on_the_main_process_reaches_the_others(monkeypatch, raised):
    # under a launcher the other processes wait in a broadcast for the main one's word: an
    # error that skipped it (anything but a PbbError did) left them hanging until its timeout
    from pbb import dist

    sent = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "broadcast", lambda obj: sent.append(obj) or obj)

    def fails():
        raise raised

    monkeypatch.setenv("RANK", "0")
    with pytest.raises(type(raised)) as got:  # the main process: its own error
        dist.on_main(fails)
    assert got.value is raised
    assert sent and str(raised.strerror if isinstance(raised, OSError) else raised) in sent[0]
    monkeypatch.setenv("RANK", "1")  # another process: the main one's word, as one line
    monkeypatch.setattr(dist, "broadcast", lambda obj: sent[0])
    with pytest.raises(PbbError, match="No space left" if isinstance(raised, OSError)
                       else "holds another run"):
        dist.on_main(fails)


@pytest.mark.parametrize("module", ["pbb.experiments.run", "pbb.experiments.sweep",
                                    "pbb.experiments.claims", "pbb.experiments.executors",
                                    "pbb.evaluation.evaluate", "pbb.store"])
def test_a_progress_message_is_one_line_in_a_log_file(module, capsys):
    """Run, sweep and claims messages are read from log files (``--no-progress > run.log``) and
    grepped for a stage or point name: a message longer than the 80 columns rich gives a
    non-terminal stays one line, the name not cut from its line."""
    import importlib

    stage = "activation_warmup-" + "0123456789ab" * 8
    importlib.import_module(module).console.print(
        f"[dim]retroactive/activation_warmup: done earlier, reusing {stage}[/]")
    said = capsys.readouterr()
    lines = (said.out + said.err).splitlines()
    assert lines == [f"retroactive/activation_warmup: done earlier, reusing {stage}"]
