"""Users' own functions: the sandbox contains what they do, the import reports it and goes on."""

import json
import socket
import time
from pathlib import Path

import pytest

from pbb import data
from pbb.data.importers import REPORT, import_functions
from pbb.domains import get_domain
from pbb.domains.imported import ImportedConfig
from pbb.domains.sandbox import Limits, Sandbox
from pbb.domains.values import same_literal
from pbb.errors import PbbError
from tests.conftest import run_cli

ESCAPE = Path("/tmp/pbb-sandbox-escape.txt")

# (what it does, code, expected reason fragment)
HOSTILE = [
    ("infinite loop", "def f(x):\n    while True:\n        pass", "TimeUp"),
    ("fork bomb", "import os\ndef f(x):\n    while True:\n        os.fork()", "os.fork is not allowed"),
    ("10 GB", "def f(x):\n    return len(bytearray(10 * 1024 ** 3))", "MemoryError"),
    ("write outside", f"def f(x):\n    open({str(ESCAPE)!r}, 'w').write('x')\n    return x",
     "outside the sandbox directory"),
    ("socket", "import socket\ndef f(x):\n    return socket.create_connection(('127.0.0.1', 9))",
     "import socket is not allowed"),
    ("sys.exit", "import sys\ndef f(x):\n    sys.exit(3)", "called sys.exit(3)"),
    ("os._exit", "import os\ndef f(x):\n    os._exit(7)", "exited with code 7"),
    ("print 100 MB", "def f(x):\n    print('x' * (100 * 1024 ** 2))\n    return x", "OutputLimit"),
    ("recursion", "def f(x):\n    return f(x + 1)", "RecursionError"),
    ("clock", "import time\ndef f(x):\n    return int(time.time())", "reads the clock"),
    ("random", "import random\ndef f(x):\n    return random.randint(0, 10 ** 9)", "random state"),
    ("identity", "def f(x):\n    return object()", "Nondeterministic"),
    ("subprocess", "def f(x):\n    import subprocess\n    return subprocess.run(['true'])", "not allowed"),
    ("os.system", "import os\ndef f(x):\n    return os.system('true')", "os.system is not allowed"),
    ("C-level loop", "def f(x):\n    return 10 ** (10 ** 9)", "TimeUp"),
    ("reads stdin", "def f(x):\n    return input()", "EOFError"),
    ("rebinds a builtin", "import builtins\ndef f(x):\n    builtins.len = lambda s: 0\n    return x",
     "import builtins is not allowed"),
]
GOOD = [
    ("def total(nums):\n    return sum(nums)", ["[1, 2, 3]", "[]", "[-4, 4, 9]"], ["6", "0", "9"]),
    ("def rep(s, k):\n    return s * k", ["'ab', 2", "'x', 3", "'', 5"], ["'abab'", "'xxx'", "''"]),
    ("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)", ["3", "5", "0"], None),
    ("def evens(n):\n    return {i for i in range(n) if i % 2 == 0}", ["0", "5", "7"], ["set()", "{0, 2, 4}", "{0, 2, 4, 6}"]),
    ("def scratch(x):\n    open('note.txt', 'w').write(str(x))\n    return open('note.txt').read()",
     ["1", "22", "333"], ["'1'", "'22'", "'333'"]),
    ("import random\ndef seeded(x):\n    return random.Random(x).randint(0, 100)", ["1", "2", "3"], None),
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    ESCAPE.unlink(missing_ok=True)
    d = tmp_path_factory.mktemp("imp")
    lines = []
    for i, (code, inputs, outputs) in enumerate(GOOD):
        lines.append({"code": code, "inputs": inputs, **({"outputs": outputs} if outputs else {}),
                      "id": f"good-{i}"})
        if i == 2:  # the hostile ones in the middle: the import must go on after them
            lines += [{"code": code, "inputs": ["1", "2"], "id": what} for what, code, _ in HOSTILE]
    f = d / "funcs.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = run_cli("data", "import", str(f), "--out", str(d / "set"), "--test-inputs", "1",
                "--set", "call_seconds=1", "--set", "wall_seconds=8")
    assert r.returncode == 0, r.stderr
    return d / "set", [json.loads(x) for x in (d / "set" / "import_report.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("what,code,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_each_hostile_function_is_contained_and_reported(imported, what, code, reason):
    _, report = imported
    rec = next(r for r in report if r["id"] == what)
    assert rec["status"] == "skipped" and reason in rec["reason"], rec
    assert not ESCAPE.exists()


def test_good_functions_are_imported_with_their_outputs(imported):
    path, report = imported
    ds = data.load(path)
    assert [r["id"] for r in report if r["status"] == "imported"] == [f"good-{i}" for i in range(len(GOOD))]
    assert len(ds.behaviours) == len(GOOD)
    by_b = {}
    for d in ds.demonstrations:
        by_b.setdefault(d.behaviour_id, []).append(d)
    fact = next(b for b in ds.behaviours if b.name == "fact")
    assert {d.input: d.output for d in by_b[fact.id]} == {"fact(3)": "6", "fact(5)": "120", "fact(0)": "1"}
    for b in ds.behaviours:
        assert sum(d.use == "test" for d in by_b[b.id]) == 1
    assert data.validate(ds, progress=False) == []  # re-executed in the sandbox


def test_gold_scores_one_and_wrong_scores_zero(imported):
    path, _ = imported
    ds = data.load(path)
    dom = get_domain("imported")
    behaviours = {b.id: b for b in ds.behaviours}
    for d in ds.demonstrations:
        b = behaviours[d.behaviour_id]
        assert dom.score(b, d.input, d.output) == 1.0
        assert dom.score(b, d.input, d.output + " + 1") == 0.0
        assert dom.score(b, d.input, "'" + d.output + "'") == 0.0
        assert dom.score(b, d.input, None) == 0.0


def test_clashing_names_get_fresh_pointers_renamed_everywhere(tmp_path):
    f = tmp_path / "f.jsonl"
    lines = [{"code": "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)", "inputs": ["3", "4"]},
             {"code": "def f(n):\n    return n * 2", "inputs": ["3", "4"]},
             {"code": "def helper(x):\n    return x\ndef f(n):\n    return helper(n) + 1",
              "inputs": ["3", "4"], "name": "f"}]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds, report = import_functions(f, test_inputs=1, eval_fraction=0.5, seed=0, cfg=ImportedConfig(),
                                  progress=False)
    names = [b.name for b in ds.behaviours]
    assert names[0] == "f" and len(set(names)) == 3
    for b in ds.behaviours[1:]:
        assert b.meta["renamed_from"] == "f" and f"def {b.name}(n)" in b.instruction
        assert "def f(" not in b.instruction
    assert f"1 + {names[0]}(n - 1)" in ds.behaviours[0].instruction
    for d in ds.demonstrations:  # queries call the new names, and the outputs are unchanged
        b = ds.behaviour(d.behaviour_id)
        assert d.input.startswith(b.name + "(")
        assert get_domain("imported").execute(b, d.input).output == d.output
    assert [d.output for d in ds.demonstrations] == ["3", "4", "6", "8", "4", "5"]


def test_import_is_deterministic(tmp_path):
    f = tmp_path / "f.jsonl"
    f.write_text("".join(json.dumps({"code": f"def g{i}(a, b):\n    return a * {i} - b",
                                     "inputs": [f"{j}, {j + 1}" for j in range(5)]}) + "\n"
                         for i in range(20)))
    outs = []
    for name in ("a", "b"):
        r = run_cli("data", "import", str(f), "--out", str(tmp_path / name), "--test-inputs", "2")
        assert r.returncode == 0, r.stderr
        outs.append([(tmp_path / name / x).read_bytes() for x in
                     ("behaviours.jsonl", "demonstrations.jsonl", "manifest.json", "import_report.jsonl")])
    assert outs[0] == outs[1]


def test_bad_lines_are_reported_and_an_all_bad_file_is_one_error(tmp_path):
    f = tmp_path / "f.jsonl"
    f.write_text('not json\n{"inputs": ["1"]}\n[1, 2]\n{"code": "def f(x) return", "inputs": ["1", "2"]}\n'
                 '{"code": "x = 1", "inputs": ["1", "2"]}\n{"code": "def f(x):\\n    return x", "inputs": ["1)"]}\n')
    r = run_cli("data", "import", str(f), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no usable function" in r.stderr
    assert "line 1: invalid JSON" in r.stderr
    assert not (tmp_path / "o").exists()
    with pytest.raises(PbbError, match="file not found"):
        import_functions(tmp_path / "missing.jsonl", test_inputs=1, eval_fraction=0.5, seed=0,
                         cfg=ImportedConfig(), progress=False)


# CRUXEval's own shape: one call per function, the expected output given
CRUX = [
    {"code": "def f(text):\n    return text[::-1]", "input": "'abc'", "output": "'cba'", "id": "sample_0"},
    {"code": "def f(nums):\n    return [n * 2 for n in nums]", "input": "[1, 2]", "output": "[2, 4]",
     "id": "sample_1"},
    {"code": "def f(a, b):\n    return a % b", "input": "7, 3", "output": "1", "id": "sample_2"},
    {"code": "def f(d):\n    return sorted(d)", "input": "{'b': 1, 'a': 2}", "output": "['a', 'b']",
     "id": "sample_3"},
    {"code": "def f(s, k):\n    return s.count(k)", "input": "'banana', 'a'", "output": "3",
     "id": "sample_4"},
    {"code": "def f(x):\n    return x + 1", "input": "41", "output": "43", "id": "sample_5"},  # wrong
    {"code": "def f(xs):\n    return max(xs)", "input": "[3, 9, 2]", "output": "9", "id": "sample_6"},
    {"code": "def f(n):\n    return n // 2", "input": "9", "output": "4", "id": "sample_7"},
]


def test_single_input_functions_in_cruxeval_shape_import_into_both_splits(tmp_path):
    f = tmp_path / "crux.jsonl"
    bad = ['not json', '{"input": "1", "output": "1", "id": "no_code"}',
           '{"code": "def f(x):\\n    return x", "input": "1, ,", "output": "1", "id": "bad_args"}']
    f.write_text("\n".join([json.dumps(r) for r in CRUX[:4]] + bad + [json.dumps(r) for r in CRUX[4:]])
                 + "\n")
    r = run_cli("data", "import", str(f), "--out", str(tmp_path / "o"), "--eval-fraction", "0.5")
    assert r.returncode == 0, r.stderr
    report = {x["line"]: x for x in map(json.loads, (tmp_path / "o" / REPORT).read_text().splitlines())}
    assert "invalid JSON" in report[5]["reason"] and "'code'" in report[6]["reason"]
    assert "input 1 is not an argument list" in report[7]["reason"]
    assert "gives 42, expected 43" in report[9]["reason"]  # every expected output is checked
    imported = [x for x in report.values() if x["status"] == "imported"]
    assert len(imported) == 7 and {x["split"] for x in imported} == {"train", "eval"}
    ds = data.load(tmp_path / "o")
    uses = {b.id: sorted(d.use for d in ds.demonstrations if d.behaviour_id == b.id)
            for b in ds.behaviours}
    for b in ds.behaviours:  # eval: its one input is the test; train: a demonstration, no test
        assert uses[b.id] == (["test"] if b.split == "eval" else ["train"]), (b.split, uses[b.id])
    n_eval = sum(b.split == "eval" for b in ds.behaviours)
    assert 0 < n_eval < 7  # the output says what the import did with them
    assert (f"eval: {n_eval} functions, {n_eval} with too few inputs for both uses (all their "
            "inputs are test inputs)") in " ".join(r.stdout.split())
    dom = get_domain("imported")
    for d in ds.demonstrations:  # the given outputs are the computed ones
        assert dom.score(ds.behaviour(d.behaviour_id), d.input, d.output) == 1.0
    assert {ds.behaviour(x["behaviour_id"]).meta["source_id"] for x in imported} == \
        {r["id"] for r in CRUX} - {"sample_5"}


def test_literal_comparison():
    assert same_literal("set()", "set()") and same_literal("frozenset({1, 2})", "frozenset({2, 1})")
    assert same_literal("'ab'", '"ab"') and same_literal("[1,2]", "[1, 2]") and same_literal("nan", "nan")
    assert not same_literal("1", "True") and not same_literal("1", "1.0") and not same_literal("x", "'x'")


def test_the_parent_is_untouched_and_a_dead_worker_is_replaced():
    with Sandbox(1, Limits(call_seconds=1, wall_seconds=5)) as sb:
        assert sb.run("import os\ndef f(x):\n    os._exit(0)", "f", ["1"]).outputs is None
        assert sb.run("def f(x):\n    return x + 1", "f", ["1"]).outputs == ["2"]
    socket.socket().close()  # the parent's own modules are not patched
    assert time.time() > 0


BURN = "def burn(n):\n    t = 0\n    for i in range(n):\n        t += i\n    return t"


def _turns_for(seconds: float) -> int:
    """How many turns of BURN's loop take about ``seconds`` of CPU time on this machine."""
    namespace: dict = {}
    exec(BURN, namespace)
    n, start = 300_000, time.process_time()
    namespace["burn"](n)
    return max(1, int(n * seconds / max(time.process_time() - start, 1e-3)))


def test_every_function_gets_a_fresh_cpu_budget():
    # one reused worker, 1 s of CPU per function; each burns ~0.6 s (two runs of ~0.3 s): a
    # per-process limit kills the second, a per-function one none; a hog is stopped by it alone
    n = _turns_for(0.3)
    burn = (BURN, "burn", [str(n)])
    hog = ("def hog(x):\n    while True:\n        pass", "hog", ["1"])
    with Sandbox(1, Limits(cpu_seconds=1, call_seconds=30, wall_seconds=60)) as sb:
        outcomes = [sb.run(*job) for job in (burn, burn, hog, burn)]
    assert [o.outputs for o in outcomes[:2] + outcomes[3:]] == [[str(n * (n - 1) // 2)]] * 3, outcomes
    assert "more than 1 s of CPU time" in outcomes[2].error


# (what it reads, code, the name the reason must give): each read is coarse, so that only the
# blockers catch it (the run-twice check sees the same value twice)
READS = [(f"time.{name}", f"import time\ndef f(x):\n    return time.{name}() // 10 ** 15",
          f"time.{name}")
         for name in ("time", "time_ns", "perf_counter", "perf_counter_ns", "monotonic",
                      "monotonic_ns", "process_time", "process_time_ns", "thread_time",
                      "thread_time_ns")] + [
    ("time.clock_gettime", "import time\ndef f(x):\n"
     "    return time.clock_gettime(time.CLOCK_REALTIME) // 100000", "time.clock_gettime"),
    ("time.clock_gettime_ns", "from time import clock_gettime_ns, CLOCK_MONOTONIC\n"
     "def f(x):\n    return clock_gettime_ns(CLOCK_MONOTONIC) // 10 ** 15", "time.clock_gettime_ns"),
    ("os.times", "import os\ndef f(x):\n    return os.times()[0] // 10 ** 9", "os.times"),
    ("os.urandom", "import os\ndef f(x):\n    return len(os.urandom(4))", "os.urandom"),
    ("os.getrandom", "import os\ndef f(x):\n    return len(os.getrandom(4))", "os.getrandom"),
    ("uuid.uuid4", "import uuid\ndef f(x):\n    return len(str(uuid.uuid4()))", "os.urandom"),
    ("random.seed()", "import random\ndef f(x):\n    random.seed()\n    return x", "random.seed"),
    ("random.Random()", "import random\ndef f(x):\n    return random.Random().random() < 2",
     "random.Random() without a seed"),
    ("random.SystemRandom", "import random\ndef f(x):\n    return random.SystemRandom().random() < 2",
     "random.SystemRandom"),
    ("datetime.now", "import datetime\ndef f(x):\n    return datetime.datetime.now().year // 10 ** 4",
     "datetime.now"),
]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(1, Limits(call_seconds=5, wall_seconds=20)) as sb:
        yield sb


@pytest.mark.parametrize("what,code,named", READS, ids=[r[0] for r in READS])
def test_every_clock_and_entropy_read_is_refused_by_name(sandbox, what, code, named):
    out = sandbox.run(code, "f", ["1"])
    assert out.outputs is None and out.error.startswith("Nondeterministic: " + named), out
    # the worker still works, explicitly seeded generators included
    assert sandbox.run("import random\ndef f(x):\n    return random.Random(x).random()", "f",
                       ["5"]).outputs == [repr(__import__("random").Random(5).random())]


DEFAULT_LIMITS = {"call_seconds": 2.0, "wall_seconds": 20.0, "memory_mb": 1024}  # as before the sizes


def test_oversized_code_inputs_and_outputs_are_skipped_and_the_import_goes_on(tmp_path):
    long_code = "def g(x):\n    '''" + "y" * 300 + "'''\n    return x"
    lines = [{"code": "def f(x):\n    return x + 1", "inputs": ["1", "2"], "id": "good-1"},
             {"code": long_code, "inputs": ["1", "2"], "id": "long code"},
             {"code": "def h(s):\n    return len(s)", "inputs": ["'a'", repr("z" * 100)],
              "id": "long input"},
             {"code": "def k(n):\n    return 'w' * n", "inputs": ["10", "500"], "id": "long output"},
             {"code": "def m(x):\n    return x * 2", "inputs": ["1", "2"], "id": "good-2"}]
    f = tmp_path / "f.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = run_cli("data", "import", str(f), "--out", str(tmp_path / "o"), "--test-inputs", "1",
                "--set", "max_source_chars=200", "--set", "max_input_chars=50",
                "--set", "max_output_chars=100")
    assert r.returncode == 0, r.stderr
    report = [json.loads(x) for x in (tmp_path / "o" / REPORT).read_text().splitlines()]
    assert [x.get("reason") for x in report] == [
        None, f"the code is {len(long_code)} characters, over max_source_chars=200",
        "input 2 is 102 characters, over max_input_chars=50",
        "OutputLimit: the result's repr is 502 characters, over max_output_chars=100", None]
    assert [x["id"] for x in report if x["status"] == "imported"] == ["good-1", "good-2"]
    ds = data.load(tmp_path / "o")
    assert ds.behaviours[0].meta["limits"] == {**DEFAULT_LIMITS, "max_source_chars": 200,
                                               "max_input_chars": 50, "max_output_chars": 100}
    assert data.validate(ds, progress=False) == []  # re-run under the limits it was imported with
    # the defaults: recorded as before (the same bytes for the same data), and documented
    assert ImportedConfig().recorded_limits() == DEFAULT_LIMITS
    assert "over max_source_chars=100,000" in Limits().size_problem("#" * 100_001, [])
    assert "over max_input_chars=10,000" in Limits().size_problem("", ["1" * 10_001])
