"""Stage contents of every curriculum: counts, sharing, and the leakage rules."""

import pytest

from pbb import data
from pbb.config import CurriculumConfig, StageConfig
from pbb.errors import PbbError
from pbb.rows import curricula


@pytest.fixture(scope="module")
def ds():
    return data.generate("arithmetic", behaviours=20, demos=4, test_inputs=3, eval_fraction=0.5,
                         seed=1, progress=False)


CFG = CurriculumConfig(declarative_repeats=3, demo_modes=["direct", "cot"], demos_only_k=2,
                       replay=0.25)


def kinds(rows, split_ids):
    return {(r["kind"], r["behaviour_id"] in split_ids) for r in rows}


def test_proactive_stages(ds):
    s1, s2 = curricula.build("proactive", ds, CFG)
    train_ids = {b.id for b in ds.split("train")}
    assert len(s1.rows) == 10 * 3 + 10 * 4 * 2
    assert all(r["behaviour_id"] in train_ids for r in s1.rows)
    assert sum(r["kind"] == "declarative" for r in s1.rows) == 30
    assert {r["kind"] for r in s1.rows} == {"declarative", "direct", "cot"}
    # stage 2: 30 eval declaratives + replay share 0.25 -> 10 stage-1 rows
    decl2 = [r for r in s2.rows if r["behaviour_id"] not in train_ids]
    assert len(decl2) == 30 and all(r["kind"] == "declarative" for r in decl2)
    assert len(s2.rows) == 40
    replay = [r for r in s2.rows if r["behaviour_id"] in train_ids]
    assert all(r["replay"] and {**r, "replay": False} in [{**x, "replay": False} for x in s1.rows]
               for r in replay)
    assert s2.recall_ids == list(dict.fromkeys(r["behaviour_id"] for r in decl2))  # not replay's


def test_interleaved_not_blocked(ds):
    s1, _ = curricula.build("proactive", ds, CFG)
    first_half = {r["kind"] for r in s1.rows[: len(s1.rows) // 2]}
    assert first_half == {"declarative", "direct", "cot"}


def test_mixture_is_the_same_rows_as_one_stage(ds):
    (mix,) = curricula.build("mixture", ds, CFG)
    s1, s2 = curricula.build("proactive", ds, CFG.model_copy(update={"replay": 0.0}))
    key = lambda r: (r["kind"], r["behaviour_id"], r["input"], r["prompt"][0]["content"])
    assert sorted(map(key, mix.rows)) == sorted(map(key, s1.rows + s2.rows))
    assert mix.rows != s1.rows + s2.rows  # shuffled


def test_config_knows_exactly_the_built_in_curricula():
    from pbb.config import BUILTIN_CURRICULA

    assert tuple(curricula.CURRICULA) == BUILTIN_CURRICULA


def test_ablations_and_untuned(ds):
    s1, _ = curricula.build("proactive", ds, CFG)
    (only1,) = curricula.build("stage1_only", ds, CFG)
    (only2,) = curricula.build("stage2_only", ds, CFG)
    eval_ids = {b.id for b in ds.split("eval")}
    assert only1.rows == s1.rows
    assert len(only2.rows) == 30 and all(r["behaviour_id"] in eval_ids for r in only2.rows)
    assert curricula.build("untuned", ds, CFG) == []


def test_demos_only_replaces_instructions_with_k_demonstrations(ds):
    s1, s2 = curricula.build("demos_only", ds, CFG)
    assert s1.rows == curricula.build("proactive", ds, CFG)[0].rows  # shared stage 1
    eval_ids = {b.id for b in ds.split("eval")}
    new = [r for r in s2.rows if r["behaviour_id"] in eval_ids]
    assert len(new) == 10 * 2 * 2
    assert not any(r["kind"] == "declarative" for r in new)
    demo_inputs = {(d.behaviour_id, d.input) for d in ds.demonstrations if d.use == "train"}
    assert all((r["behaviour_id"], r["input"]) in demo_inputs for r in new)


def test_leakage_rules_hold_for_every_curriculum(ds):
    tests = {(d.behaviour_id, d.input) for d in ds.demonstrations if d.use == "test"}
    eval_ids = {b.id for b in ds.split("eval")}
    for name in curricula.CURRICULA:
        for st in curricula.build(name, ds, CFG):
            for r in st.rows:
                assert (r["behaviour_id"], r["input"]) not in tests
                if r["kind"] != "declarative" and r["behaviour_id"] in eval_ids:
                    assert name == "demos_only"


def test_check_leakage_catches_a_test_input(ds):
    (s1,) = curricula.build("stage1_only", ds, CFG)
    t = next(d for d in ds.demonstrations if d.use == "test" and ds.behaviour(d.behaviour_id).split == "train")
    b = ds.behaviour(t.behaviour_id)
    from pbb.rows.render import make_row, row_rng

    s1.rows.append(make_row(ds.domain, b, "direct", row_rng(0), t))
    with pytest.raises(PbbError, match="test input"):
        curricula.check_leakage(ds, [s1], allow_eval_demos=True, curriculum="x")


def test_custom_curriculum_from_config(ds):
    cfg = CFG.model_copy(update={"custom": {"decl_first": [
        StageConfig(name="all_decl", parts=[{"kind": "declarative", "behaviours": "all", "repeats": 2}]),
        StageConfig(name="train_cot", parts=[{"kind": "cot", "behaviours": "train", "demos": 1}],
                    replay=0.5)]}})
    a, b = curricula.build("decl_first", ds, cfg)
    assert len(a.rows) == 40 and {r["kind"] for r in a.rows} == {"declarative"}
    cot = [r for r in b.rows if r["kind"] == "cot"]
    assert len(cot) == 10 and len(b.rows) == 20
    with pytest.raises(PbbError, match=r"unknown curriculum 'decl_frist'; known: decl_first, ") \
            as e:  # the custom ones listed with the built-ins
        curricula.build("decl_frist", ds, cfg)
    from pbb.config import check_curriculum_name

    with pytest.raises(ValueError) as said:  # word for word what the config's own check says
        check_curriculum_name("decl_frist", cfg.custom)
    assert str(e.value) == str(said.value)


def test_a_custom_stage_can_train_in_context_rows(ds):
    """kind: in_context rows: the instruction in the prompt, the trace as the completion (what
    the in-context upper bound needs: a model that saw such rows for its train functions)."""
    cfg = CFG.model_copy(update={"custom": {"ic": [
        StageConfig(name="ic1", parts=[{"kind": "in_context", "behaviours": "train", "demos": 2}])]}})
    (stage,) = curricula.build("ic", ds, cfg)
    behaviours = {b.id: b for b in ds.behaviours}
    assert len(stage.rows) == 20 and {r["kind"] for r in stage.rows} == {"in_context"}
    for r in stage.rows:
        b = behaviours[r["behaviour_id"]]
        demo = next(d for d in ds.demonstrations
                    if d.behaviour_id == b.id and d.input == r["input"])
        assert b.split == "train" and b.instruction in r["prompt"][0]["content"]
        assert r["completion"][0]["content"] == f"Trace:\n{demo.trace}"
    with pytest.raises(ValueError, match="kind"):
        StageConfig(name="x", parts=[{"kind": "recall", "behaviours": "train"}])


def test_building_is_deterministic(ds):
    again = data.generate("arithmetic", behaviours=20, demos=4, test_inputs=3, eval_fraction=0.5,
                          seed=1, progress=False)
    for name in curricula.CURRICULA:
        assert [s.rows for s in curricula.build(name, ds, CFG)] == \
               [s.rows for s in curricula.build(name, again, CFG)]


def test_a_cut_curriculum_is_its_curriculums_first_stages_unchanged(ds):
    warm = CFG.model_copy(update={"rl_warmup_demos": 2})
    full = curricula.build("retroactive", ds, warm)
    assert [s.name for s in full] == ["exposure", "activation_warmup", "activation_rl"]
    cut = curricula.build("retroactive@activation_warmup", ds, warm)
    # the same stages, rows and trainers, so the same keys: trained once, shared
    assert cut == full[:2]
    assert curricula.build("proactive@stage1", ds, CFG) == curricula.build("stage1_only", ds, CFG)
    assert curricula.build("proactive@stage2", ds, CFG) == curricula.build("proactive", ds, CFG)


def test_a_cut_at_a_stage_the_curriculum_lacks_names_its_stages(ds):
    # without rl_warmup_demos retroactive has no warm start: the error says what it has
    with pytest.raises(PbbError, match=r"retroactive@activation_warmup'.* no stage "
                       r"'activation_warmup'; its stages with these settings: exposure, "
                       r"activation_rl$"):
        curricula.build("retroactive@activation_warmup", ds, CFG)
    with pytest.raises(PbbError, match="unknown curriculum 'nope'"):
        curricula.build("nope@stage1", ds, CFG)
