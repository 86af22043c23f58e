"""Domain ciphers: the code is the function, skewed demonstration keys, uniform test keys."""

import ast
import json
from pathlib import Path

import pytest

from pbb import data
from pbb.config import load_config
from pbb.domains import get_domain
from pbb.domains.ciphers import COMMON_KEYS, CiphersDomain
from pbb.errors import PbbError
from pbb.rows.curricula import build

DOMAIN = get_domain("ciphers")


@pytest.fixture(scope="module")
def cset():
    return data.generate("ciphers", behaviours=80, demos=10, test_inputs=4, eval_fraction=0.5,
                         seed=4, progress=False, options={"key_skew": 0.8})


def _call(b, query):
    namespace = {}
    exec(b.instruction, namespace)  # our own generated source, run as plain Python
    args = ast.literal_eval("(" + query[len(b.name) + 1:-1] + ",)")
    return repr(namespace[b.name](*args))


def _demos_as_code(ds):
    """Each demonstration with its behaviour, once the set validates, and each output checked
    to be what the behaviour's code computes."""
    behaviours = {b.id: b for b in ds.behaviours}
    assert data.validate(ds, progress=False) == []
    for d in ds.demonstrations:
        b = behaviours[d.behaviour_id]
        assert d.output == _call(b, d.input)
        yield b, d


def test_recorded_outputs_are_what_the_code_computes(cset):
    behaviours = {b.id: b for b in cset.behaviours}
    for d in cset.demonstrations:
        assert d.output == _call(behaviours[d.behaviour_id], d.input)
    assert {b.meta["family"] for b in cset.behaviours} == {"shift", "affine", "keyword", "vigenere"}
    assert {b.meta["direction"] for b in cset.behaviours} == {"encrypt", "decrypt"}


def test_gold_scores_one_wrong_scores_zero_and_validate_passes(cset):
    assert data.validate(cset, progress=False) == []
    behaviours = {b.id: b for b in cset.behaviours}
    for d in cset.demonstrations[:300]:
        b = behaviours[d.behaviour_id]
        assert DOMAIN.score(b, d.input, d.output) == 1.0
        assert DOMAIN.score(b, d.input, d.output[:-2] + "q'") == float(d.output[:-2] + "q'" == d.output)
        assert DOMAIN.score(b, d.input, d.output.strip("'")) == 0.0  # not a string literal
        assert DOMAIN.score(b, d.input, None) == 0.0
    trace = cset.demonstrations[0].trace.splitlines()
    assert trace[-1] == f"Answer: {cset.demonstrations[0].output}"


def test_demonstration_keys_are_skewed_and_test_keys_uniform(cset):
    behaviours = {b.id: b for b in cset.behaviours}
    share = {}
    for use in ("train", "test"):
        ds = [d for d in cset.demonstrations if d.use == use]
        share[use] = sum(CiphersDomain.is_common_key(behaviours[d.behaviour_id], d.input)
                         for d in ds) / len(ds)
    assert 0.72 < share["train"] < 0.88, share
    assert share["test"] < 0.1, share
    for b in cset.behaviours:
        demo_inputs = {d.input for d in cset.demonstrations if d.behaviour_id == b.id and d.use == "train"}
        test_inputs = {d.input for d in cset.demonstrations if d.behaviour_id == b.id and d.use == "test"}
        assert not demo_inputs & test_inputs


def test_train_key_skew_skews_only_the_eval_ciphers_demonstrations(cset):
    """train_key_skew 0: train ciphers' demonstrations draw uniform keys, eval ciphers' keep the
    skew; the ciphers themselves are those drawn without the option."""
    uniform = data.generate("ciphers", behaviours=80, demos=10, test_inputs=4, eval_fraction=0.5,
                            seed=4, progress=False, options={"key_skew": 0.8, "train_key_skew": 0.0})
    behaviours = {b.id: b for b in uniform.behaviours}
    share = {}
    for split in ("train", "eval"):
        demos = [d for d in uniform.demonstrations
                 if d.use == "train" and behaviours[d.behaviour_id].split == split]
        share[split] = sum(CiphersDomain.is_common_key(behaviours[d.behaviour_id], d.input)
                           for d in demos) / len(demos)
    assert share["train"] < 0.1 and 0.72 < share["eval"] < 0.88, share
    assert [b.instruction for b in uniform.behaviours] == [b.instruction for b in cset.behaviours]


def test_same_seed_same_data_and_distinct_behaviours(cset):
    again = data.generate("ciphers", behaviours=80, demos=10, test_inputs=4, eval_fraction=0.5,
                          seed=4, progress=False, options={"key_skew": 0.8})
    assert [b.to_record() for b in again.behaviours] == [b.to_record() for b in cset.behaviours]
    assert [d.to_record() for d in again.demonstrations] == [d.to_record() for d in cset.demonstrations]
    assert len({b.instruction.split("\n", 1)[1] for b in cset.behaviours}) == len(cset.behaviours)


def test_tampered_instruction_is_caught_not_run(cset, tmp_path):
    data.save(cset, tmp_path / "s")
    lines = (tmp_path / "s" / "behaviours.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["instruction"] = rec["instruction"].replace("return out", "return out.upper()")
    lines[0] = json.dumps(rec)
    (tmp_path / "s" / "behaviours.jsonl").write_text("\n".join(lines) + "\n")
    problems = data.validate(data.load(tmp_path / "s"), progress=False)
    assert any("instruction differs from its cipher parameters" in p for p in problems)


def test_bad_queries_and_knobs_are_clear_errors(cset):
    b = cset.behaviours[0]
    with pytest.raises(PbbError, match=f"calls other, expected {b.name}"):
        DOMAIN.execute(b, "other('abc', 3)")
    with pytest.raises(PbbError, match="not a function call"):
        DOMAIN.execute(b, f"{b.name}('abc', 3")
    with pytest.raises(PbbError, match="not literals"):
        DOMAIN.execute(b, f"{b.name}(text, 3)")
    with pytest.raises(PbbError, match="bad arguments"):
        DOMAIN.execute(b, f"{b.name}()")
    with pytest.raises(PbbError, match="bad arguments"):
        DOMAIN.execute(b, f"{b.name}(3, 'abc')")
    with pytest.raises(PbbError, match="only 2 distinct"):
        data.generate("ciphers", behaviours=3, demos=1, test_inputs=1, eval_fraction=0.5, seed=0,
                      progress=False, options={"alphabet": "standard", "families": ["shift"]})


def test_robustness_config_shares_stage_one_and_leaks_nothing():
    cfg = load_config(Path("configs/ciphers_robustness.yaml"))
    ds = data.generate("ciphers", behaviours=16, demos=6, test_inputs=2, eval_fraction=0.5,
                       seed=0, progress=False, options=cfg.data.options)
    built = {n: build(n, ds, cfg.curriculum) for n in cfg.curricula}
    assert len({tuple(map(str, st[0].rows)) for st in built.values()}) == 1  # one stage 1
    eval_ids = {b.id for b in ds.split("eval")}
    kinds = {n: {r["kind"] for r in st[1].rows if r["behaviour_id"] in eval_ids} for n, st in built.items()}
    assert kinds == {"instruction": {"declarative"}, "skewed_demos": {"direct", "cot"},
                     "both": {"declarative", "direct", "cot"}, "skewed_direct": {"direct"}}
    assert set(cfg.data.options["families"]) <= set(COMMON_KEYS)
    # the claim's recipe: its stage 1 and its three curricula, so the stages it trained are reused
    from pbb.experiments.sweep import load_sweep

    _, _, points = load_sweep(Path("configs/claims/ciphers_robustness.yaml"))
    claim = points[0]["config"]
    assert cfg.data == claim.data and cfg.train == claim.train and cfg.eval == claim.eval
    assert all(cfg.curriculum.custom[n] == claim.curriculum.custom[n]
               for n in ("instruction", "skewed_demos", "both"))
    # its fourth curriculum is ciphers_direct_demos' skewed_direct, on the same data
    _, _, points = load_sweep(Path("configs/claims/ciphers_direct_demos.yaml"))
    direct = points[0]["config"]
    assert cfg.data == direct.data and cfg.eval == direct.eval.model_copy(update={"modes": ["cot"]})
    assert cfg.train.model_copy(update={"stages": {}}) == direct.train.model_copy(update={"stages": {}})
    assert all(cfg.train.stages[n] == direct.train.stages[n] for n in ("stage1", "eval_instructions"))
    assert cfg.curriculum.custom["skewed_direct"] == direct.curriculum.custom["skewed_direct"]


@pytest.fixture(scope="module", params=["indexed", "lookup"])
def written(request):
    return request.param, data.generate(
        "ciphers", behaviours=40, demos=12, test_inputs=2, eval_fraction=0.5, seed=5,
        progress=False, options={"trace": request.param, "max_text": 8})


def _lists(lines: list[str]) -> dict[str, str]:
    """The spelled-out lists of a trace, each as the letters in position order: ``positions``
    (``k=0 w=1 ...``) and ``letters`` (``0=k 1=w ...``), plain or of the keyword table."""
    import re

    lists = {}
    for line in lines:
        m = re.match(r"^((?:table )?(?:positions|letters)): (.*)$", line)
        if m:
            pairs = [p.split("=") for p in m.group(2).split(" ")]
            if m.group(1).endswith("letters"):
                pairs = [(c, i) for i, c in pairs]
            assert [int(i) for _, i in pairs] == list(range(26))
            lists[m.group(1)] = "".join(c for c, _ in pairs)
    return lists


def test_a_written_out_trace_gives_the_same_outputs_and_every_written_step_holds(written):
    """Each step line of the indexed and lookup traces is checked against the behaviour itself:
    the letter's position and the result's position are those of the spelled-out lists, the
    arithmetic and the reduction hold, and the letters make the output the code computes. The
    lookup trace writes the result position first (``-> 10=x``), with a list to copy it from."""
    import re

    trace, ds = written
    checked = set()
    for b, d in _demos_as_code(ds):
        lines = d.trace.splitlines()
        lists = _lists(lines)
        enc, family = b.meta["direction"] == "encrypt", b.meta["family"]
        table = "table " if family == "keyword" else ""
        if trace == "indexed":
            assert lists["positions"] == b.meta["alphabet"]
            source = target = lists["positions"]
            if family == "keyword":  # alphabet -> table, or back when decrypting
                source, target = lists["positions"], lists["table positions"]
                if not enc:
                    source, target = target, source
        else:  # a positions list to read from, a letters list to copy the result from
            source = lists["positions" if enc or not table else "table positions"]
            target = lists["letters" if not enc or not table else "table letters"]
            assert set(lists) == {"positions" if enc or not table else "table positions",
                                  "letters" if not enc or not table else "table letters"}
            assert (source if enc or not table else target) == b.meta["alphabet"]
            text = ast.literal_eval(lines[0].split(" = ", 1)[1].rsplit(", ", 1 + (family == "affine"))[0])
            spelled = next(x for x in lines if x.startswith("spelled: "))[len("spelled: "):]
            assert "".join(c if len(c) == 1 else ast.literal_eval(c)
                           for c in re.findall(r"'.'|\S", spelled)) == text
        out = ""
        for line in lines:
            if line.startswith("step "):
                ch, i = re.match(r"^step ([a-z])=(\d+)", line).groups()
                if trace == "indexed":
                    res, j = re.search(r"-> ([a-z])=(\d+)$", line).groups()
                else:
                    j, res = re.search(r"-> (\d+)=([a-z])$", line).groups()
                for expr, value in re.findall(r"(-?\d+ [-+*] -?\d+(?: \+ \d+)?) = (-?\d+)", line):
                    assert eval(expr) == int(value), line  # noqa: S307 - digits and + - * only
                assert source[int(i)] == ch and target[int(j)] == res, line
                out += res
                checked.add((family, b.meta["direction"]))
            elif line.endswith(": kept"):
                out += ast.literal_eval(line[:-len(": kept")])
        assert repr(out) == d.output
    assert len(checked) == 8  # every family in both directions


def test_the_trace_knob_changes_only_the_traces():
    compact = data.generate("ciphers", behaviours=8, demos=3, test_inputs=1, seed=2, progress=False,
                            eval_fraction=0.5)
    indexed = data.generate("ciphers", behaviours=8, demos=3, test_inputs=1, seed=2, progress=False,
                            eval_fraction=0.5,
                            options={"trace": "indexed"})
    assert "trace" not in compact.behaviours[0].meta  # data sets made before stay byte for byte
    assert [b.instruction for b in compact.behaviours] == [b.instruction for b in indexed.behaviours]
    assert [(d.input, d.output) for d in compact.demonstrations] == \
        [(d.input, d.output) for d in indexed.demonstrations]
    assert all("positions: " in d.trace for d in indexed.demonstrations)
    assert not any("positions: " in d.trace for d in compact.demonstrations)
    with pytest.raises(PbbError, match="trace"):
        data.generate("ciphers", behaviours=2, demos=1, test_inputs=1, seed=0, progress=False,
                      eval_fraction=0.5, options={"trace": "verbose"})


@pytest.mark.parametrize("trace", ["walk", "countdown"])
def test_the_walk_trace_walks_the_ring_it_writes_and_refuses_families_it_cannot_walk(trace):
    """Each walk step starts at its letter on the ``ring`` written in the trace, every hop is the
    ring's next letter, the hops count up to the shift (countdown: down from it to 0, the shift
    copied to the step's head; a Vigenère key letter's position read from ``positions``) and the
    step's letter is the last hop: the outputs are the code's."""
    import re

    ds = data.generate("ciphers", behaviours=24, demos=8, test_inputs=2, eval_fraction=0.5,
                       seed=6, progress=False, options={"trace": trace, "max_text": 8,
                                                        "families": ["shift", "vigenere"]})
    checked = set()
    for b, d in _demos_as_code(ds):
        enc, lines = b.meta["direction"] == "encrypt", d.trace.splitlines()
        ring = next(x for x in lines if x.startswith("ring"))
        assert ring.startswith("ring: " if enc else "ring back: ")
        order = "".join(ring.split(": ", 1)[1].split(" "))
        alphabet = b.meta["alphabet"]
        assert order == (alphabet if enc else alphabet[::-1]) * 2 + order[0]
        key = ast.literal_eval("(" + d.input[len(b.name) + 1:-1] + ",)")[1]
        out, n = "", 0
        for line in lines:
            m = re.match(r"^step ([a-z])(?:, key ([a-z])=(\d+)|, k=(\d+))?: ((?:[a-z]\d+ ?)*)"
                         r"-> ([a-z])$", line)
            if m:
                ch, kc, s, k, walked, res = m.groups()
                shift = key if b.meta["family"] == "shift" else alphabet.index(key[n % len(key)])
                if kc:
                    assert kc == key[n % len(key)] and int(s) == shift, line
                assert (k is not None) == (trace == "countdown" and not kc), line
                assert k is None or int(k) == shift, line
                hops = walked.split()
                counts = range(shift - 1, -1, -1) if trace == "countdown" else range(1, shift + 1)
                assert [int(h[1:]) for h in hops] == list(counts), line
                last = ch
                for h in hops:
                    assert h[0] == order[order.index(last) + 1], line
                    last = h[0]
                assert res == last, line
                out, n = out + res, n + 1
                checked.add((b.meta["family"], b.meta["direction"]))
            elif line.endswith(": kept"):
                out += ast.literal_eval(line[:-len(": kept")])
        assert repr(out) == d.output
    assert len(checked) == 4
    with pytest.raises(PbbError, match=f"trace {trace} writes the families shift, vigenere only, "
                                       "not affine"):
        data.generate("ciphers", behaviours=4, demos=1, test_inputs=1, seed=0, progress=False,
                      eval_fraction=0.5, options={"trace": trace, "families": ["shift", "affine"]})


@pytest.mark.parametrize(("trace", "style"), [("compact", True), ("walk", True),
                                               ("walk", "quoted")])
def test_running_output_writes_the_output_so_far_after_each_step_and_changes_nothing_else(
        trace, style):
    """With ``running_output`` each step (and kept character) is followed by the output so far,
    one character a token (``True``) or as the quoted string (``"quoted"``), so the ``return``
    line is the one above it joined; the other lines, the outputs and the instructions are
    those of the trace without it, and without the option the behaviours' meta and the config's
    dump carry no trace of it (older data sets keep their bytes)."""
    from pbb.domains.ciphers import CiphersConfig

    families = ["shift", "vigenere"]
    opts = {"trace": trace, "families": families, "max_text": 9}
    plain, running = (data.generate("ciphers", behaviours=8, demos=6, test_inputs=1, seed=5,
                                    eval_fraction=0.5, progress=False,
                                    options={**opts, **extra})
                      for extra in ({}, {"running_output": style}))
    assert "running_output" not in plain.behaviours[0].meta
    assert running.behaviours[0].meta["running_output"] == style
    assert "running_output" not in CiphersConfig(**opts).model_dump()
    assert CiphersConfig(**opts, running_output=style).model_dump()["running_output"] == style
    assert [b.instruction for b in plain.behaviours] == [b.instruction for b in running.behaviours]
    prefix = "out = " if style == "quoted" else "out: "
    kept = 0
    for p, r in zip(plain.demonstrations, running.demonstrations, strict=True):
        assert (p.input, p.output) == (r.input, r.output)
        lines = r.trace.splitlines()
        assert [x for x in lines if not x.startswith(prefix)] == p.trace.splitlines()
        out = ""
        for before, line in zip(lines, lines[1:]):
            if line.startswith(prefix):  # after a step line (its letter last) or a kept one
                out += ast.literal_eval(before[:-6]) if before.endswith(": kept") else before[-1]
                kept += before.endswith(": kept")
                assert line == (f"out = {out!r}" if style == "quoted" else
                                "out: " + " ".join(c if c.isalpha() else repr(c) for c in out))
        text = ast.literal_eval("(" + r.input[r.input.index("(") + 1:-1] + ",)")[0]
        assert len(out) == len(text)
        assert lines[-2] == f"return {out!r}" and repr(out) == r.output
    assert kept  # a text with a space in it was among them


def test_the_spaced_alphabet_code_computes_the_same_ciphers_and_its_ring_copies_its_tokens():
    """``alphabet_code: spaced`` writes the alphabet as ``"k w o ...".split()``: run as Python,
    each cipher computes the outputs of the string version (both directions, every family but
    keyword); only the alphabet line differs; a walk's ring is the code's letters in order; by
    default the meta and the config's dump carry nothing of it (older data sets keep their
    bytes); keyword ciphers, whose table joins ``keyword + alphabet``, are refused."""
    from pbb.domains.ciphers import CiphersConfig

    opts = {"families": ["shift", "affine", "vigenere"], "max_text": 6}
    plain, spaced = (data.generate("ciphers", behaviours=12, demos=6, test_inputs=2, seed=3,
                                   eval_fraction=0.5, progress=False, options={**opts, **extra})
                     for extra in ({}, {"alphabet_code": "spaced"}))
    assert "alphabet_code" not in plain.behaviours[0].meta
    assert "alphabet_code" not in CiphersConfig(**opts).model_dump()
    assert {b.meta["alphabet_code"] for b in spaced.behaviours} == {"spaced"}
    seen = set()
    for p, s in zip(plain.behaviours, spaced.behaviours, strict=True):
        letters = " ".join(s.meta["alphabet"])
        assert s.instruction.splitlines()[1] == f'    alphabet = "{letters}".split()'
        assert p.instruction.splitlines()[1] == f'    alphabet = "{s.meta["alphabet"]}"'
        assert p.instruction.splitlines()[2:] == s.instruction.splitlines()[2:]
        seen.add((s.meta["family"], s.meta["direction"]))
    assert len(seen) == 6
    shown = list(_demos_as_code(spaced))  # validates and runs every spaced cipher's code
    assert [(d.input, d.output) for _, d in shown] == \
        [(d.input, d.output) for d in plain.demonstrations]
    walk = data.generate("ciphers", behaviours=2, demos=2, test_inputs=1, seed=3, progress=False,
                         eval_fraction=0.5, options={"alphabet_code": "spaced", "trace": "walk",
                                                     "families": ["shift"],
                                                     "directions": ["encrypt"]})
    for b, d in _demos_as_code(walk):
        ring = next(x for x in d.trace.splitlines() if x.startswith("ring: "))
        assert ring[len("ring: "):].startswith(b.instruction.split('"')[1])
    with pytest.raises(PbbError, match="alphabet_code spaced .* keyword"):
        data.generate("ciphers", behaviours=4, demos=1, test_inputs=1, seed=0, progress=False,
                      eval_fraction=0.5, options={"alphabet_code": "spaced"})
