"""``pbb.memo``: a plan of many points makes what they share once (data sets, rows, the data
digest of evaluation keys), and plans and keys are what they are without it."""

import copy
import hashlib
import json

from pbb import data as data_mod
from pbb import memo
from pbb.config import load_config
from pbb.evaluation.reuse import eval_key
from pbb.rows.curricula import build_for_run, declarative_rows, demo_rows


def test_once_makes_a_value_once_in_the_block_only_for_the_same_owner():
    made = []

    def make():
        made.append(1)
        return [len(made)]

    a, b = object(), object()
    assert memo.once(a, ("k",), make) == [1] and memo.once(a, ("k",), make) == [2]  # no block
    with memo.memoized():
        first = memo.once(a, ("k",), make)
        with memo.memoized():  # nested: the outer block's values stay
            assert memo.once(a, ("k",), make) is first
        assert memo.once(a, ("k",), make) is first
        assert memo.once(b, ("k",), make) is not first  # another owner
        assert memo.once(a, ("other",), make) is not first
    assert memo._MEMO is None and memo.once(a, ("k",), make) == [len(made)]  # released


def _ds(seed=0):
    return data_mod.generate("arithmetic", behaviours=8, demos=3, test_inputs=2,
                             eval_fraction=0.5, seed=seed, progress=False)


def _fewer(ds):
    """``ds`` less its first demonstration: the same evaluation queries, other records."""
    fewer = copy.copy(ds)
    fewer.demonstrations = list(ds.demonstrations[1:])
    return fewer


def test_rows_and_stages_in_the_block_equal_those_made_without_it():
    cfg = load_config("configs/quickstart.yaml", {"data.behaviours": 8, "curricula":
                      ["proactive", "mixture", "demos_only", "retroactive", "rl_only"]})
    ds = _ds()
    plain = build_for_run(cfg, ds)
    with memo.memoized():
        kept = build_for_run(cfg, ds)
        again = build_for_run(cfg, ds)
        train = ds.split("train")
        rows = demo_rows(ds, train, ["cot"])
        rows.append({"mine": True})  # the caller's list is its own
        assert {"mine": True} not in demo_rows(ds, train, ["cot"])
        other = _ds(1)  # another data set, of the same ids: its own rows
        assert declarative_rows(other, other.split("train"), 1) != \
            declarative_rows(ds, ds.split("train"), 1)
    assert {n: [(s.name, s.rows) for s in st] for n, st in kept.items()} == \
        {n: [(s.name, s.rows) for s in st] for n, st in plain.items()} == \
        {n: [(s.name, s.rows) for s in st] for n, st in again.items()}


def test_the_evaluation_key_hashes_the_data_set_as_record_by_record():
    """The key hashes the data's records in one update: the digest of one update a record, as
    every kept evaluation's key was made (a change would orphan them), in the block or not."""
    from pbb.evaluation import reuse

    cfg, ds = load_config("configs/quickstart.yaml"), _ds()
    by_record = hashlib.sha256()
    for rec in (*ds.behaviours, *ds.demonstrations):
        by_record.update(json.dumps(rec.to_record(), ensure_ascii=False).encode())
    assert hashlib.sha256(reuse._records(ds)).hexdigest() == by_record.hexdigest()
    plain = eval_key(cfg, ds, "cot", 5, "cpu")
    outside = eval_key(cfg, _fewer(ds), "cot", 5, "cpu")
    with memo.memoized():
        assert eval_key(cfg, ds, "cot", 5, "cpu") == plain
        assert eval_key(cfg, ds, "direct", 5, "cpu") != plain
        # the same queries, other records (a demonstration fewer): its own digest, so the key
        # differs only if the records are hashed per data set, not kept from the first
        assert eval_key(cfg, _fewer(ds), "cot", 5, "cpu") == outside != plain
