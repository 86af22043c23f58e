"""Data sets on disk through the CLI: determinism, validation, and clear errors on bad input."""

import json
import os

import pytest

from pbb import data
from pbb.data import BEHAVIOURS, DEMONSTRATIONS, MANIFEST
from pbb.errors import PbbError
from tests.conftest import run_cli

GEN = ["data", "generate", "arithmetic", "--behaviours", "40", "--demos", "6",
       "--test-inputs", "4", "--eval-fraction", "0.25", "--seed", "3"]


def _files(d):
    return {name: (d / name).read_bytes() for name in (BEHAVIOURS, DEMONSTRATIONS, MANIFEST)}


def test_same_arguments_same_bytes_in_separate_processes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(*GEN, "--out", str(a)).returncode == 0
    assert run_cli(*GEN, "--out", str(b)).returncode == 0
    assert _files(a) == _files(b)
    c = tmp_path / "c"
    assert run_cli(*GEN[:-1], "4", "--out", str(c)).returncode == 0
    assert _files(c)[BEHAVIOURS] != _files(a)[BEHAVIOURS]


def test_manifest_records_counts_config_and_hashes(tmp_path):
    out = tmp_path / "set"
    assert run_cli(*GEN, "--set", "max_statements=3", "--out", str(out)).returncode == 0
    m = json.loads((out / MANIFEST).read_text())
    assert m["domain"] == "arithmetic" and m["seed"] == 3
    assert m["config"]["max_statements"] == 3
    assert m["counts"] == {"behaviours": 40, "train_behaviours": 30, "eval_behaviours": 10,
                           "demonstrations": 240, "test_inputs": 160}
    lines = (out / DEMONSTRATIONS).read_text().splitlines()
    assert len(lines) == 400
    rec = json.loads(lines[0])
    assert list(rec) == ["behaviour_id", "input", "output", "trace", "use"]


def test_validate_passes_on_1000_behaviours_by_50_demos(tmp_path):
    out = tmp_path / "big"
    r = run_cli("data", "generate", "arithmetic", "--behaviours", "1000", "--demos", "50",
                "--test-inputs", "10", "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = run_cli("data", "validate", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1000 behaviours, 60000 records" in r.stdout


def test_validate_reports_a_wrong_output_and_exits_1(tmp_path):
    out = tmp_path / "set"
    assert run_cli(*GEN, "--out", str(out)).returncode == 0
    lines = (out / DEMONSTRATIONS).read_text().splitlines()
    rec = json.loads(lines[5])
    rec["output"] = str(int(rec["output"]) + 1)
    lines[5] = json.dumps(rec)
    (out / DEMONSTRATIONS).write_text("\n".join(lines) + "\n")
    r = run_cli("data", "validate", str(out))
    assert r.returncode == 1
    assert f"{DEMONSTRATIONS}:6: {rec['input']} gives" in r.stdout
    assert "differs from the sha256" in r.stdout


def test_show_renders_behaviours_and_every_row_kind(tmp_path):
    out = tmp_path / "set"
    assert run_cli(*GEN, "--out", str(out)).returncode == 0
    r = run_cli("data", "show", str(out))
    assert r.returncode == 0, r.stderr
    first = json.loads((out / BEHAVIOURS).read_text().splitlines()[0])
    assert first["name"] in r.stdout
    for kind in ("declarative", "direct", "cot", "in_context"):
        assert f"row kind: {kind}" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["data", "generate", "nosuch", "--out", "{out}"], "unknown domain 'nosuch'"),
    ([*GEN[:4], "0", "--out", "{out}"], "--behaviours must be between 1"),
    (["data", "generate", "arithmetic", "--demos", "-3", "--out", "{out}"], "--demos must be"),
    (["data", "generate", "arithmetic", "--eval-fraction", "1.5", "--out", "{out}"],
     "--eval-fraction must be in [0, 1]"),
    (["data", "generate", "arithmetic", "--set", "max_args=9", "--out", "{out}"],
     "arithmetic options: max_args: "),
    (["data", "generate", "arithmetic", "--set", "min_args=3", "--set", "max_args=2",
      "--out", "{out}"], "min_args (3) is larger than max_args (2)"),
    (["data", "generate", "arithmetic", "--set", "input_max=3", "--set", "max_args=1",
      "--test-inputs", "4", "--out", "{out}"], "4 test inputs leave no demonstration input"),
    (["data", "generate", "arithmetic", "--set", "bogus", "--out", "{out}"], "expected KEY=VALUE"),
    # both importers check their input file (in pbb.data.importers, one place)
    (["data", "import-grammars", "{out}.txt", "--out", "{out}"], "grammar file not found"),
    (["data", "import", "{out}.jsonl", "--out", "{out}"], "file not found"),
])
def test_bad_generate_arguments_one_line_error_no_output(tmp_path, args, message):
    out = tmp_path / "out"
    r = run_cli(*[a.replace("{out}", str(out)) for a in args])
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], r.stderr
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temporary leftovers either


@pytest.mark.parametrize("args, message", [
    (["data", "generate", "arithmetic"], "Missing"),
    (["data", "generate", "arithmetic", "--out", "x", "--behaviours", "many"], "--behaviours"),
    (["data", "frobnicate"], "No such command"),
])
def test_usage_errors_are_one_line(tmp_path, args, message):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli(*GEN, "--out", str(blocker / "sub"))
    assert r.returncode != 0 and r.stderr.startswith("error: --out")
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli(*GEN, "--out", str(blocker))
    assert r.returncode != 0 and "not a directory" in r.stderr


def test_non_empty_out_needs_force_and_force_replaces(tmp_path):
    out = tmp_path / "set"
    assert run_cli(*GEN, "--out", str(out)).returncode == 0
    before = _files(out)
    r = run_cli(*GEN[:-1], "9", "--out", str(out))
    assert r.returncode != 0 and "--force" in r.stderr
    assert _files(out) == before
    assert run_cli(*GEN[:-1], "9", "--out", str(out), "--force").returncode == 0
    assert _files(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


@pytest.mark.parametrize("command", ["show", "validate"])
@pytest.mark.parametrize("damage, message", [
    (lambda lines: lines.__setitem__(2, '{"behaviour_id": "arith'), f"{DEMONSTRATIONS}:3: invalid JSON"),
    (lambda lines: lines.__setitem__(4, "[1, 2]"), f"{DEMONSTRATIONS}:5: expected a JSON object"),
    (lambda lines: lines.__setitem__(1, '{"input": "x"}'), f"{DEMONSTRATIONS}:2: missing field"),
])
def test_corrupt_data_file_names_file_and_line(tmp_path, command, damage, message):
    out = tmp_path / "set"
    assert run_cli(*GEN, "--out", str(out)).returncode == 0
    lines = (out / DEMONSTRATIONS).read_text().splitlines()
    damage(lines)
    (out / DEMONSTRATIONS).write_text("\n".join(lines) + "\n")
    r = run_cli("data", command, str(out))
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def _set_field(file: str, line: int, key: str, value):
    def damage(d):
        if file == MANIFEST:
            man = json.loads((d / MANIFEST).read_text())
            man[key] = value
            (d / MANIFEST).write_text(json.dumps(man))
            return
        lines = (d / file).read_text().splitlines()
        rec = json.loads(lines[line - 1])
        rec[key] = value
        lines[line - 1] = json.dumps(rec)
        (d / file).write_text("\n".join(lines) + "\n")
    return damage


@pytest.mark.parametrize("damage, message", [
    (_set_field(BEHAVIOURS, 2, "instruction", 123), f"{BEHAVIOURS}:2: BehaviourRecord record, "
     "field instruction: Input should be a valid string"),
    (_set_field(BEHAVIOURS, 1, "meta", "notadict"), f"{BEHAVIOURS}:1: BehaviourRecord record, "
     "field meta: Input should be a valid dictionary"),
    (_set_field(BEHAVIOURS, 3, "split", "test"), f"{BEHAVIOURS}:3: BehaviourRecord record, "
     "field split: Input should be 'train' or 'eval'"),
    (_set_field(MANIFEST, 0, "seed", "abc"), f"{MANIFEST}: DataManifest record, field seed: "),
    (_set_field(MANIFEST, 0, "config", "oops"), f"{MANIFEST}: DataManifest record, field config"),
    (_set_field(MANIFEST, 0, "files", ["a"]), f"{MANIFEST}: DataManifest record, field files"),
    (_set_field(MANIFEST, 0, "domain", "nosuch"),
     f"{MANIFEST}: field domain: unknown domain 'nosuch'"),
    (_set_field(MANIFEST, 0, "config", {"max_argz": 2}),
     f"{MANIFEST}: config: max_argz: unknown key"),
])
def test_a_field_of_the_wrong_type_names_its_file_line_and_field(tmp_path, damage, message):
    """Every reader of a data set (show, validate, a run on data.path, export) loads it here:
    a field of the wrong type is one line, not a traceback from deep in whatever used it."""
    d = data.save(data.generate("arithmetic", behaviours=4, demos=2, test_inputs=2,
                                eval_fraction=0.5, seed=0, progress=False), tmp_path / "set")
    damage(d)
    with pytest.raises(PbbError) as e:
        data.load(d)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert str(d) in str(e.value)


def test_missing_directory_is_a_clear_error(tmp_path):
    r = run_cli("data", "show", str(tmp_path / "nope"))
    assert r.returncode == 1 and "not a data set directory" in r.stderr


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    ds = data.generate("arithmetic", behaviours=5, demos=2, test_inputs=2, eval_fraction=0.4,
                       seed=0, progress=False)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "atomic_write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        data.save(ds, tmp_path / "set")
    assert list(tmp_path.iterdir()) == []


def test_version_prints_the_package_version():
    import pbb

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"pbb {pbb.__version__}"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask_not_a_private_mode(tmp_path, umask):
    """Files and directories built aside and renamed into place (data sets, converted models)
    must get the modes that open() and mkdir() give, not mkstemp's 0600 or mkdtemp's 0700."""
    import stat

    from pbb import data
    from pbb.jsonio import atomic_write_text, write_jsonl
    from pbb.models import _atomic_dir

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x\n")
        write_jsonl(tmp_path / "b.jsonl", [{"k": 1}])
        data.save(data.generate("arithmetic", behaviours=4, demos=1, test_inputs=1,
                                eval_fraction=0.5, seed=0), tmp_path / "ds")
        _atomic_dir(tmp_path / "model", lambda d: (d / "config.json").write_text("{}"))
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x\n")
        os.mkdir(tmp_path / "plain_dir")
    finally:
        os.umask(old)
    assert mode(tmp_path / "plain.txt") == 0o666 & ~umask
    for name in ("a.txt", "b.jsonl", "ds/behaviours.jsonl", "ds/manifest.json"):
        assert mode(tmp_path / name) == mode(tmp_path / "plain.txt"), name
    assert mode(tmp_path / "plain_dir") == 0o777 & ~umask
    for name in ("ds", "model"):
        assert mode(tmp_path / name) == mode(tmp_path / "plain_dir"), name
