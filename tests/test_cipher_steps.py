"""pbb.evaluation.cipher_steps: each operation of a cipher step judged on what the model wrote."""

import ast
import re

import pytest

from pbb import data
from pbb.evaluation.cipher_steps import _ARITHMETIC, CHECKS, check


@pytest.fixture(scope="module", params=["indexed", "lookup"])
def ds(request):
    return data.generate("ciphers", behaviours=16, demos=4, test_inputs=1, eval_fraction=0.5,
                         seed=3, progress=False, options={"trace": request.param})


def _by_id(ds):
    return {b.id: b for b in ds.behaviours}


def test_a_gold_trace_passes_every_check(ds):
    behaviours = _by_id(ds)
    for d in ds.demonstrations:
        b = behaviours[d.behaviour_id]
        c = check(b, d.input, d.trace)
        text = d.input.split("('", 1)[1].split("'")[0]
        assert c["steps"] == sum(ch in b.meta["alphabet"] for ch in text)
        for k in CHECKS:
            want = c["arithmetic steps"] if k in _ARITHMETIC else c["steps"]
            assert c[k] == want, (k, d.trace)


def _first_step(trace: str) -> str:
    return next(line for line in trace.splitlines() if line.startswith("step "))


def test_a_wrong_sum_fails_the_arithmetic_and_what_follows_from_it_only(ds):
    """The arithmetic's last value changed by one: the arithmetic, its evaluation and the result
    position are wrong; the operands, the letter's position and the copy of the written result
    still count as right."""
    behaviours = _by_id(ds)
    d = next(d for d in ds.demonstrations
             if behaviours[d.behaviour_id].meta["family"] in ("shift", "vigenere"))
    b, line = behaviours[d.behaviour_id], _first_step(d.trace)
    value = re.findall(r"= (-?\d+)", line)[-1]
    bad = re.sub(rf"= {value}( ->)", lambda m: f"= {(int(value) + 1) % 26}{m.group(1)}", line)
    c = check(b, d.input, d.trace.replace(line, bad, 1))
    arithmetic = c["arithmetic steps"]
    assert (arithmetic - c["arithmetic"], arithmetic - c["evaluation"]) == (1, 1)
    assert c["steps"] - c["result"] == 1
    assert c["position"] == c["letter"] == c["input"] == c["steps"]
    assert c["operands"] == arithmetic


def test_a_wrong_key_fails_the_operands_and_a_reduction_by_other_than_26_fails_the_reduction(ds):
    behaviours = _by_id(ds)
    d = next(d for d in ds.demonstrations if behaviours[d.behaviour_id].meta["family"] == "shift"
             and ", " in _first_step(d.trace))  # a step with a reduction
    b, line = behaviours[d.behaviour_id], _first_step(d.trace)
    sign, k = re.search(r": \d+ ([-+]) (\d+) = ", line).groups()
    wrong_key = line.replace(f" {sign} {k} = ", f" {sign} {int(k) + 1} = ", 1)
    c = check(b, d.input, d.trace.replace(line, wrong_key, 1))
    assert c["arithmetic steps"] - c["operands"] == 1
    wrong_reduction = re.sub(r", (-?\d+) ([-+]) (\d+) = (\d+)",
                             lambda m: f", {m[1]} {m[2]} {int(m[3]) + 1} = "
                                       f"{eval(f'{m[1]} {m[2]} {int(m[3]) + 1}')}", line)  # noqa: S307
    c = check(b, d.input, d.trace.replace(line, wrong_reduction, 1))
    assert c["arithmetic steps"] - c["reduction"] == 1
    assert c["evaluation"] == c["arithmetic steps"]


def _other_letter(line: str) -> str:
    """A step line with another result letter (indexed: ``-> x=10``; lookup: ``-> 10=x``)."""
    indexed = re.search(r"-> ([a-z])=\d+$", line)
    old = indexed.group(1) if indexed else line[-1]
    new = "a" if old != "a" else "b"
    return line.replace(f"-> {old}=", f"-> {new}=") if indexed else line[:-1] + new


def test_a_letter_copied_from_the_wrong_entry_fails_the_letter_and_the_step(ds):
    behaviours = _by_id(ds)
    d = ds.demonstrations[0]
    b, line = behaviours[d.behaviour_id], _first_step(d.trace)
    c = check(b, d.input, d.trace.replace(line, _other_letter(line), 1))
    assert c["steps"] - c["letter"] == 1 and c["steps"] - c["step"] == 1
    assert c["position"] == c["result"] == c["steps"]


def test_a_step_that_names_the_wrong_letter_fails_its_input_and_position(ds):
    behaviours = _by_id(ds)
    d = next(d for d in ds.demonstrations if behaviours[d.behaviour_id].meta["family"] == "shift")
    b, line = behaviours[d.behaviour_id], _first_step(d.trace)
    ch = line[len("step ")]
    other = next(c for c in "abcdefghijklmnopqrstuvwxyz" if c != ch)
    c = check(b, d.input, d.trace.replace(line, f"step {other}" + line[len("step ") + 1:], 1))
    assert (c["steps"] - c["input"], c["steps"] - c["position"]) == (1, 1)
    assert c["arithmetic"] == c["arithmetic steps"] and c["letter"] == c["steps"]


def test_a_result_position_off_by_one_copied_faithfully_fails_the_result_and_the_step_only(ds):
    """The result's position one past the arithmetic's and the letter copied from it: the copy
    is right (``letter``), the position (``result``) and the output letter (``step``) are not.
    A keyword step's result must be its letter's own position."""
    behaviours = _by_id(ds)
    for family in ("shift", "keyword"):
        d = next(d for d in ds.demonstrations if behaviours[d.behaviour_id].meta["family"] == family)
        b, line = behaviours[d.behaviour_id], _first_step(d.trace)
        lists = {x.split(": ", 1)[0]: x.split(": ", 1)[1] for x in d.trace.splitlines()
                 if re.match(r"^(table )?(positions|letters): ", x)}
        m = re.search(r"-> (?:([a-z])=(\d+)|(\d+)=([a-z]))$", line)
        j = int(m.group(2) or m.group(3))
        k = (j + 1) % 26
        # the list the result is copied from: "letters"/"table letters" (lookup) or the last
        # positions list (indexed: the alphabet, or the table a keyword encrypts to)
        name = next((n for n in lists if n.endswith("letters")), None)
        if name:
            entries = dict(p.split("=") for p in lists[name].split(" "))
            bad = line[:m.start()] + f"-> {k}={entries[str(k)]}"
        else:
            entries = {i: c for c, i in (p.split("=") for p in list(lists.values())[-1].split(" "))}
            if family == "keyword" and b.meta["direction"] == "decrypt":
                entries = {i: c for c, i in (p.split("=") for p in lists["positions"].split(" "))}
            bad = line[:m.start()] + f"-> {entries[str(k)]}={k}"
        c = check(b, d.input, d.trace.replace(line, bad, 1))
        assert c["steps"] - c["result"] == 1 and c["steps"] - c["step"] == 1, (family, bad)
        assert c["letter"] == c["position"] == c["input"] == c["steps"], (family, bad)


def test_summarise_reads_a_runs_samples_skips_recall_and_survives_odd_numbers(ds, tmp_path,
                                                                              capsys):
    """Two train queries: one answered with its gold trace, one with a step line that writes
    ``04`` and a wrong letter; a recall sample (no query) is skipped, as is an unfinished
    mode folder."""
    import json

    from pbb.evaluation import cipher_steps
    from pbb.store import RunStore

    run = tmp_path / "run"
    data.save(ds, RunStore(run).data)
    behaviours = _by_id(ds)
    tests = [d for d in ds.demonstrations if d.use == "test"
             and behaviours[d.behaviour_id].split == "train"
             and behaviours[d.behaviour_id].meta["family"] == "shift"][:2]
    first, second = tests
    line = _first_step(second.trace)
    odd = _other_letter(re.sub(r": (\d+) ", lambda m: f": 0{m.group(1)} ", line, count=1))
    rows = [(first, first.trace, 1.0), (second, second.trace.replace(line, odd, 1), 0.0)]
    store = RunStore(run)
    for mode, samples in [("cot", [{"behaviour_id": d.behaviour_id, "split": "train",
                                    "input": d.input, "completion": text, "score": score}
                                   for d, text, score in rows]),
                          ("recall", [{"behaviour_id": first.behaviour_id, "split": "train",
                                       "input": "", "completion": "def x(): pass", "score": 0.0}])]:
        store.eval_dir("stage1", mode).mkdir(parents=True)
        store.samples("stage1", mode).write_text("".join(json.dumps(s) + "\n" for s in samples))
    store.eval_dir("stage1", "direct").mkdir(parents=True)  # begun, no samples yet
    got = cipher_steps.summarise(run, "stage1", "cot", "train")
    steps = sum(1 for d, _, _ in rows for x in d.trace.splitlines() if x.startswith("step "))
    assert got["completions"] == 2 and got["correct"] == 0.5 and got["lists exact"] == 1.0
    assert got["step lines"] == steps
    assert got["step"] == round((steps - 1) / steps, 3) and got["position"] == 1.0
    cipher_steps.main([str(run)])
    assert [x.split(" {")[0] for x in capsys.readouterr().out.splitlines()] == ["run stage1 cot"]


def _walks(trace: str):
    return data.generate("ciphers", behaviours=12, demos=4, test_inputs=1, eval_fraction=0.5,
                         seed=3, progress=False,
                         options={"trace": trace, "families": ["shift", "vigenere"]})


@pytest.fixture(scope="module", params=["walk", "countdown"])
def walked(request):
    return _walks(request.param)


def _walk_step(ds, family):
    """A demonstration of ``family`` and its first step line with at least two hops."""
    behaviours = _by_id(ds)
    for d in ds.demonstrations:
        b = behaviours[d.behaviour_id]
        line = next((x for x in d.trace.splitlines() if x.startswith("step ")
                     and re.search(r" [a-z]2 ", x)), None)
        if b.meta["family"] == family and line:
            return b, d, line
    raise AssertionError(family)


def test_walk_gold_passes_and_each_broken_operation_fails_its_own_check(walked):
    from pbb.evaluation.cipher_steps import WALK_CHECKS, check_walk

    behaviours = _by_id(walked)
    for d in walked.demonstrations:
        c = check_walk(behaviours[d.behaviour_id], d.input, d.trace)
        assert c["steps"] and c["hops"] == c["hop steps"] and c["key"] == c["key steps"]
        assert c["first hop"] == c["first hop steps"] <= c["steps"]  # a shift of 0 walks none
        assert all(c[k] == c["steps"] for k in WALK_CHECKS
                   if k not in ("hops", "key", "first hop")), d.trace
    b, d, line = _walk_step(walked, "shift")
    head, walk = line.split(": ", 1)
    hops = walk.split(" -> ")[0].split(" ")
    # the second hop's letter wrong, the walk then goes on faithfully from it: one hop wrong
    bad_letter = next(c for c in "abcdefghijklmnopqrstuvwxyz" if c != hops[1][0])
    wrong = f"{head}: " + " ".join([hops[0], bad_letter + hops[1][1:], *hops[2:]]) + " -> " + line[-1]
    c = check_walk(b, d.input, d.trace.replace(line, wrong, 1))
    assert c["hop steps"] - c["hops"] >= 1 and c["count"] == c["result"] == c["steps"]
    assert c["first hop"] == c["first hop steps"]  # the walk started right
    # the first hop's letter wrong: the first-hop check fails there
    first = next(x for x in "abcdefghijklmnopqrstuvwxyz" if x != hops[0][0])
    wrong = f"{head}: " + " ".join([first + hops[0][1:], *hops[1:]]) + " -> " + line[-1]
    c = check_walk(b, d.input, d.trace.replace(line, wrong, 1))
    assert c["first hop steps"] - c["first hop"] == 1
    # the walk stopped one hop early, its last letter copied: the count and the step fail
    short = f"{head}: " + " ".join(hops[:-1]) + " -> " + hops[-2][0]
    c = check_walk(b, d.input, d.trace.replace(line, short, 1))
    assert (c["steps"] - c["count"], c["steps"] - c["step"]) == (1, 1)
    assert c["result"] == c["steps"] and c["hops"] == c["hop steps"]
    # two hops run together ("b1c2", as a model may write them): read as two hops, both right
    together = f"{head}: " + "".join(hops[:2]) + (" " + " ".join(hops[2:]) if hops[2:] else "") \
        + " -> " + line[-1]
    c = check_walk(b, d.input, d.trace.replace(line, together, 1))
    assert c["hops"] == c["hop steps"] and c["count"] == c["step"] == c["steps"]
    # a letter after "->" other than the last hop's: the result and the step fail
    other = line[:-1] + next(c for c in "abcdefghijklmnopqrstuvwxyz" if c != line[-1])
    c = check_walk(b, d.input, d.trace.replace(line, other, 1))
    assert (c["steps"] - c["result"], c["steps"] - c["step"]) == (1, 1)
    # a Vigenère key letter's position read wrong: the key check fails
    b, d, line = _walk_step(walked, "vigenere")
    kc, s = re.search(r", key ([a-z])=(\d+):", line).groups()
    c = check_walk(b, d.input, d.trace.replace(line, line.replace(f"{kc}={s}:", f"{kc}={int(s) + 1}:"), 1))
    assert c["key steps"] - c["key"] == 1 and c["count"] == c["steps"]
    if b.meta["trace"] == "countdown":  # the hops counted down from the head's wrong shift:
        #                                 the first hop's count is wrong, the rest follow it
        assert c["hop steps"] - c["hops"] == 1


def test_a_countdown_hop_is_checked_against_the_count_before_it():
    """Countdown: each hop's count is one below the one before it (the first, below the shift
    its head copied), so a count that skips fails there and at the hop after it, and the hops
    after those stay right."""
    from pbb.evaluation.cipher_steps import check_walk

    b, d, line = _walk_step(_walks("countdown"), "shift")
    head, walk = line.split(": ", 1)
    hops = walk.split(" -> ")[0].split(" ")
    k = int(head.split("k=")[1])
    assert [int(h[1:]) for h in hops] == list(range(k - 1, -1, -1))
    skipped = f"{head}: " + " ".join([hops[0], hops[1][0] + str(int(hops[1][1:]) - 1),
                                      *hops[2:]]) + " -> " + line[-1]
    c = check_walk(b, d.input, d.trace.replace(line, skipped, 1))
    assert c["hop steps"] - c["hops"] == 2  # the skip, and the hop after it (one too low)
    assert c["first hop"] == c["first hop steps"]
    assert c["count"] == c["step"] == c["key"] == c["steps"]
    wrong_k = line.replace(f"k={k}:", f"k={k + 1}:")
    c = check_walk(b, d.input, d.trace.replace(line, wrong_k, 1))
    assert c["key steps"] - c["key"] == 1 and c["hop steps"] - c["hops"] == 1
    assert c["first hop steps"] - c["first hop"] == 1  # counted down from the wrong k


@pytest.mark.parametrize("trace", ["compact", "indexed", "lookup", "walk", "countdown"])
def test_a_gold_trace_puts_its_output_together_right_whatever_its_trace(trace):
    """Every trace's step lines are read for their letters: a gold completion's out lines and
    its return all join them, with ``running_output`` spaced or quoted, or without it (no out
    lines)."""
    from pbb.domains.cipher_traces import out_line
    from pbb.evaluation.cipher_steps import check_output

    families = ["shift", "vigenere"] if trace in ("walk", "countdown") else \
        ["shift", "affine", "keyword", "vigenere"]
    for running in (True, "quoted", False):
        ds = data.generate("ciphers", behaviours=8, demos=3, test_inputs=1, eval_fraction=0.5,
                           seed=3, progress=False,
                           options={"trace": trace, "families": families, "max_text": 9,
                                    "running_output": running})
        behaviours = _by_id(ds)
        for d in ds.demonstrations:
            b = behaviours[d.behaviour_id]
            c = check_output(b, d.trace)
            n = len(ast.literal_eval(d.output))
            assert (c["out lines"], c["out"], c["return joins"]) == \
                ((n, n, 1) if running else (0, 0, 1)), d.trace
            # as a CoT completion writes it: the recalled code (its `out = ""`) above the trace
            recalled = f"Recall the definition:\n{b.instruction}\nTrace:\n{d.trace}"
            assert 'out = ""' in b.instruction and check_output(b, recalled) == c
            broken = d.trace.replace(f"return {d.output}", f"return {d.output[:-2]}'")
            assert check_output(behaviours[d.behaviour_id], broken)["return joins"] == 0
            if running:  # the last out line with a letter too many fails once
                last = [x for x in d.trace.splitlines() if x.startswith(("out: ", "out = "))][-1]
                extra = d.trace.replace(last, last + " a" if running is True else last[:-1] + "a'")
                c = check_output(behaviours[d.behaviour_id], extra)
                assert (c["out lines"], c["out"]) == (n, n - 1)
                # the right letters in the other style's line: not the trained line
                other = out_line(ast.literal_eval(d.output),
                                 behaviours[d.behaviour_id].meta["alphabet"],
                                 quoted=running is True)
                c = check_output(behaviours[d.behaviour_id], d.trace.replace(last, other))
                assert (c["out lines"], c["out"]) == (n, n - 1)


def test_the_output_checks_follow_the_step_lines_not_the_truth():
    """``out`` lines must be the letters of the step lines above them and ``return`` their join,
    judged against what the completion's own steps wrote: a return that drops a letter fails
    ``return joins`` only; a wrong step letter carried faithfully into the out lines and the
    return fails neither; an out line that swaps two letters fails once; a second return line
    is not counted."""
    from pbb.evaluation.cipher_steps import check_output, check_walk

    ds = data.generate("ciphers", behaviours=8, demos=4, test_inputs=1, eval_fraction=0.5,
                       seed=3, progress=False, options={"trace": "walk", "min_text": 3,
                                                        "families": ["shift", "vigenere"],
                                                        "running_output": True})
    behaviours = _by_id(ds)
    d = next(d for d in ds.demonstrations if d.output[1] != d.output[2]
             and len(set(d.output)) >= 4)  # its first two letters differ, 3+ distinct letters
    b, out = behaviours[d.behaviour_id], ast.literal_eval(d.output)
    dropped = d.trace.replace(f"return {out!r}", f"return {out[:-1]!r}")
    c = check_output(b, dropped)
    assert (c["out lines"], c["out"], c["return joins"]) == (len(out), len(out), 0)
    assert check_output(b, dropped + f"\nreturn {out!r}")["return joins"] == 0  # the first counts
    # the first step's letter wrong, and the completion carries it on: the step fails, the
    # output checks do not (they judge the putting together, not the letters)
    lines = d.trace.splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith("step "))
    bad = next(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in out)
    carried = "\n".join([*lines[:i], lines[i][:-1] + bad, *(
        x.replace("out: " + out[0], "out: " + bad, 1) if x.startswith("out: ") else x
        for x in lines[i + 1:-2]), f"return {bad + out[1:]!r}", lines[-1]])
    c = check_output(b, carried)
    assert c["out"] == c["out lines"] and c["return joins"] == 1
    w = check_walk(b, d.input, carried)
    assert w["steps"] - w["step"] == 1
    # the last out line with its first two letters swapped
    last = max(i for i, x in enumerate(lines) if x.startswith("out: "))
    letters = lines[last][len("out: "):].split(" ")
    swapped = lines[:last] + ["out: " + " ".join([letters[1], letters[0], *letters[2:]])] \
        + lines[last + 1:]
    c = check_output(b, "\n".join(swapped))
    assert c["out lines"] - c["out"] == 1 and c["return joins"] == 1
