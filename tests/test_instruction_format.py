"""Instruction format nl: the English description is exactly the code (parsed back to the AST)."""

import ast
from pathlib import Path

import pytest
from lark import Lark, Transformer

from pbb import data
from pbb.config import load_config
from pbb.errors import PbbError
from pbb.evaluation.evaluate import build_queries
from pbb.rows.curricula import build

# An independent reading of the descriptions: a grammar for the English, then Python AST nodes.
NL = Lark(r"""
    expr: operand | "negative" operand -> neg
        | operand "plus" operand -> add | operand "minus" operand -> sub
        | operand "times" operand -> mul | operand "divided by" operand "," "rounded down" -> floordiv
        | "the remainder of" operand "divided by" operand -> mod
        | "the smaller of" operand "and" operand -> min | "the larger of" operand "and" operand -> max
        | "the absolute value of" operand -> abs
    operand: NAME -> name | INT -> const | "(" expr ")"
    cond: operand CMP operand
    CMP: "is less than" | "is at most" | "is greater than" | "is at least" | "equals" | "differs from"
    NAME: /[a-z_][a-z0-9_]*/
    %import common.INT
    %ignore " "
""", start=["expr", "cond"], parser="earley")

CMPS = {"is less than": ast.Lt, "is at most": ast.LtE, "is greater than": ast.Gt,
        "is at least": ast.GtE, "equals": ast.Eq, "differs from": ast.NotEq}


class ToAst(Transformer):
    def name(self, c): return ast.Name(str(c[0]), ast.Load())
    def const(self, c): return ast.Constant(int(c[0]))
    def operand(self, c): return c[0]
    def expr(self, c): return c[0]
    def neg(self, c): return ast.UnaryOp(ast.USub(), c[0])
    def add(self, c): return ast.BinOp(c[0], ast.Add(), c[1])
    def sub(self, c): return ast.BinOp(c[0], ast.Sub(), c[1])
    def mul(self, c): return ast.BinOp(c[0], ast.Mult(), c[1])
    def floordiv(self, c): return ast.BinOp(c[0], ast.FloorDiv(), c[1])
    def mod(self, c): return ast.BinOp(c[0], ast.Mod(), c[1])
    def min(self, c): return ast.Call(ast.Name("min", ast.Load()), list(c), [])
    def max(self, c): return ast.Call(ast.Name("max", ast.Load()), list(c), [])
    def abs(self, c): return ast.Call(ast.Name("abs", ast.Load()), list(c), [])
    def cond(self, c): return ast.Compare(c[0], [CMPS[str(c[1])]()], [c[2]])


def _expr(text):
    return ToAst().transform(NL.parse(text, start="expr"))


def read_back(description: str) -> ast.FunctionDef:
    lines = description.splitlines()
    head = lines[0]
    assert head.startswith("Function ") and head.endswith(".")
    name, _, args = head[len("Function "):-1].partition(" takes ")
    arg_names = args.replace(" and ", ", ").split(", ")

    def block(i, indent):
        body = []
        while i < len(lines) and lines[i].startswith(indent) and not lines[i][len(indent)].isspace():
            line = lines[i][len(indent):]
            if line.startswith("Set "):
                target, _, value = line[4:-1].partition(" to ")
                body.append(ast.Assign([ast.Name(target, ast.Store())], _expr(value)))
                i += 1
            elif line.startswith("Return "):
                body.append(ast.Return(_expr(line[7:-1])))
                i += 1
            elif line.startswith("If "):
                test = ToAst().transform(NL.parse(line[3:-1], start="cond"))
                then, i = block(i + 1, indent + "  ")
                other = []
                if i < len(lines) and lines[i] == indent + "Otherwise:":
                    other, i = block(i + 1, indent + "  ")
                body.append(ast.If(test, then, other))
            elif line.startswith("Repeat "):
                n, _, rest = line[7:].partition(" times, with ")
                var = rest.split(" ")[0]
                loop, i = block(i + 1, indent + "  ")
                body.append(ast.For(ast.Name(var, ast.Store()),
                                    ast.Call(ast.Name("range", ast.Load()), [ast.Constant(int(n))], []),
                                    loop, []))
            else:
                raise AssertionError(f"unreadable line {line!r}")
        return body, i

    body, end = block(1, "")
    assert end == len(lines)
    return ast.FunctionDef(name=name, args=ast.arguments(posonlyargs=[], args=[ast.arg(a) for a in arg_names], kwonlyargs=[], kw_defaults=[], defaults=[]),
                           body=body, decorator_list=[])


def test_descriptions_read_back_to_the_same_code():
    ds = data.generate("arithmetic", behaviours=400, demos=1, test_inputs=1, eval_fraction=0.5,
                       seed=9, progress=False,
                       options={"max_statements": 6, "branch_prob": 0.3, "loop_prob": 0.3,
                                "expr_depth": 2, "max_args": 3})
    for b in ds.behaviours:
        original = ast.parse(b.instruction).body[0]
        back = ast.fix_missing_locations(ast.Module([read_back(b.description)], []))
        assert ast.unparse(back) == ast.unparse(original), (b.description, b.instruction)
        assert "def " not in b.description and "%" not in b.description


def test_nl_runs_train_and_ask_with_descriptions_only():
    cfg = load_config(Path("configs/quickstart.yaml"), {"data.instruction_format": "nl"})
    ds = data.generate("arithmetic", behaviours=6, demos=2, test_inputs=1, eval_fraction=0.5,
                       seed=0, progress=False)
    fmt = cfg.data.instruction_format  # a run setting, handed to curricula and evaluation

    def texts(fmt: str) -> list[str]:
        out = [m["content"] for st in build("proactive", ds, cfg.curriculum, fmt) for r in st.rows
               for m in r["prompt"] + r["completion"]]
        return out + [q["prompt"] for q in build_queries(ds, "in_context", fmt=fmt)]

    assert not any("def " in t for t in texts(fmt))
    assert any(b.description in t for b in ds.behaviours for t in texts(fmt))
    assert any("def " in t for t in texts("code"))  # the same data set, the default format
    recall = build_queries(ds, "recall", fmt=fmt)
    assert [q["target"] for q in recall] == [b.description for b in ds.behaviours]


def test_nl_for_a_domain_without_descriptions_is_one_error(tmp_path):
    from pbb.experiments import run as run_mod

    cfg = load_config(Path("configs/quickstart.yaml"), {
        "data.domain": "grammars", "data.options": {}, "data.instruction_format": "nl",
        "model": "tiny-random", "data.behaviours": 4})
    with pytest.raises(PbbError, match="nl needs a description"):
        run_mod.run(cfg, tmp_path / "r", progress=False)
