"""An English description of an arithmetic function, generated from its AST (``nl`` format).

Exactly equivalent to the code by construction: one fixed phrase per construct, every compound
operand in parentheses, blocks indented as in the code. The tests parse descriptions back into
Python and compare the ASTs. Example::

    Function zorp_17 takes a and b.
    If a is at most 5:
      Set x to a plus (the smaller of b and 3).
    Otherwise:
      Set x to the remainder of a divided by 3.
    Repeat 2 times, with i counting from 0:
      Set x to x minus i.
    Return x.
"""

from __future__ import annotations

import ast

BINOPS = {ast.Add: "{l} plus {r}", ast.Sub: "{l} minus {r}", ast.Mult: "{l} times {r}",
          ast.FloorDiv: "{l} divided by {r}, rounded down",
          ast.Mod: "the remainder of {l} divided by {r}"}
CALLS = {"min": "the smaller of {0} and {1}", "max": "the larger of {0} and {1}",
         "abs": "the absolute value of {0}"}
COMPARE = {ast.Lt: "is less than", ast.LtE: "is at most", ast.Gt: "is greater than",
           ast.GtE: "is at least", ast.Eq: "equals", ast.NotEq: "differs from"}


def _operand(node: ast.expr) -> str:
    text = expression(node)
    return text if isinstance(node, (ast.Name, ast.Constant)) else f"({text})"


def expression(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.BinOp):
        return BINOPS[type(node.op)].format(l=_operand(node.left), r=_operand(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return f"negative {_operand(node.operand)}"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return CALLS[node.func.id].format(*(_operand(a) for a in node.args))
    raise ValueError(f"no description for {ast.unparse(node)}")


def _statements(body: list[ast.stmt], indent: str) -> list[str]:
    lines = []
    for s in body:
        if isinstance(s, ast.Assign):
            lines.append(f"{indent}Set {s.targets[0].id} to {expression(s.value)}.")
        elif isinstance(s, ast.If):
            c = s.test
            cond = f"{_operand(c.left)} {COMPARE[type(c.ops[0])]} {_operand(c.comparators[0])}"
            lines.append(f"{indent}If {cond}:")
            lines += _statements(s.body, indent + "  ")
            if s.orelse:
                lines.append(f"{indent}Otherwise:")
                lines += _statements(s.orelse, indent + "  ")
        elif isinstance(s, ast.For):
            n = s.iter.args[0].value
            lines.append(f"{indent}Repeat {n} times, with {s.target.id} counting from 0:")
            lines += _statements(s.body, indent + "  ")
        elif isinstance(s, ast.Return):
            lines.append(f"{indent}Return {expression(s.value)}.")
        else:
            raise ValueError(f"no description for {ast.unparse(s)}")
    return lines


def describe(source: str) -> str:
    """The ``nl`` instruction of a function in the arithmetic language."""
    fn = ast.parse(source).body[0]
    args = [a.arg for a in fn.args.args]
    takes = args[0] if len(args) == 1 else ", ".join(args[:-1]) + " and " + args[-1]
    return "\n".join([f"Function {fn.name} takes {takes}.", *_statements(fn.body, "")])
