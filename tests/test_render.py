"""The render layer: paraphrase coverage and the rows TRL trains on."""

from collections import Counter

from pbb.domains import Demonstration, get_domain
from pbb.domains.templates import PROGRAM_TEMPLATES
from pbb.rows.render import ROW_KINDS, make_row, row_rng, to_messages


def test_at_least_20_distinct_templates_per_kind():
    for kind in ROW_KINDS:
        assert len(set(PROGRAM_TEMPLATES[kind])) >= 20, kind


def test_templates_reference_the_behaviour_without_leaking_the_instruction():
    for kind in ("declarative", "direct", "cot"):
        for t in PROGRAM_TEMPLATES[kind]:
            assert "{instruction}" not in t
            assert ("{pointer}" in t) or ("{query}" in t)
    for t in PROGRAM_TEMPLATES["in_context"]:
        assert "{instruction}" in t and "{query}" in t


def test_rows_are_trl_prompt_completion_and_use_many_paraphrases(arith_set):
    dom = get_domain("arithmetic")
    b = arith_set.behaviours[0]
    demo = next(d for d in arith_set.demonstrations if d.behaviour_id == b.id)
    prompts = Counter()
    for i in range(200):
        row = make_row(dom, b, "direct", row_rng(0, b.id, i), demo)
        assert row["prompt"][0]["role"] == "user" and b.name in row["prompt"][0]["content"]
        assert row["completion"] == [{"role": "assistant", "content": f"Answer: {demo.output}"}]
        prompts[row["prompt"][0]["content"]] += 1
    assert len(prompts) >= 15
    m = to_messages(row)["messages"]
    assert [x["role"] for x in m] == ["user", "assistant"]


def test_completions_of_each_kind(arith_set):
    dom = get_domain("arithmetic")
    b = arith_set.behaviours[1]
    demo: Demonstration = next(d for d in arith_set.demonstrations if d.behaviour_id == b.id)
    decl = make_row(dom, b, "declarative", row_rng(0))
    assert decl["completion"][0]["content"] == b.instruction
    assert b.instruction not in decl["prompt"][0]["content"]
    cot = make_row(dom, b, "cot", row_rng(0), demo)["completion"][0]["content"]
    # recall, then trace, each under its header
    assert cot == f"Recall the definition:\n{b.instruction}\nTrace:\n{demo.trace}"
    assert dom.extract(cot) == demo.output
    ic = make_row(dom, b, "in_context", row_rng(0), demo)
    assert b.instruction in ic["prompt"][0]["content"]
    assert ic["completion"][0]["content"] == f"Trace:\n{demo.trace}"
    assert make_row(dom, b, "cot", row_rng(5, "x"), demo) == make_row(dom, b, "cot", row_rng(5, "x"), demo)
