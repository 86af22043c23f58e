"""The domain contract: every registered domain implements what the base class requires, and the
worked example of a new domain in docs/domains.md is a working domain."""

import re
from pathlib import Path

import pytest

from pbb import data
from pbb.config import CurriculumConfig
from pbb.domains import DOMAINS, Domain
from pbb.rows import curricula

REQUIRED = ("generate", "sample_inputs", "execute", "score", "pointer", "render_query")


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_registered_domains_implement_the_required_methods(name):
    domain = DOMAINS[name]
    assert isinstance(domain, Domain) and domain.name == name
    for method in REQUIRED:
        assert getattr(type(domain), method) is not getattr(Domain, method), (name, method)
    for attr in ("Config", "templates", "hints"):
        assert getattr(domain, attr), (name, attr)


def test_the_base_class_refuses_what_a_domain_left_out():
    class Half(Domain):
        name = "half"

    with pytest.raises(NotImplementedError):
        Half().execute(None, "q")
    assert Half().sample_fields(None, "q", None, [], []) == {}
    assert Half().composite_parts(None, {}) is None
    assert Half().extract("work\nAnswer: 7") == "7"


@pytest.fixture
def modular(monkeypatch):
    page = (Path(__file__).resolve().parent.parent / "docs" / "domains.md").read_text()
    section = page[page.index("## Adding a domain"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/domains.md (Adding a domain)", "exec"), namespace)  # noqa: S102 - ours
    domain = namespace["ModularDomain"]()
    monkeypatch.setitem(DOMAINS, domain.name, domain)
    return domain


def test_the_docs_example_is_a_working_domain(modular, tmp_path):
    ds = data.generate("modular", behaviours=6, demos=3, test_inputs=2, eval_fraction=0.5,
                       seed=0, options={"max_modulus": 11}, progress=False)
    data.save(ds, tmp_path / "set")
    ds = data.load(tmp_path / "set")
    assert len(ds.split("eval")) == 3 and len(ds.demonstrations) == 6 * 5
    assert not data.validate(ds, progress=False)
    for d in ds.demonstrations:
        b = ds.behaviour(d.behaviour_id)
        ns: dict = {}
        exec(b.instruction, ns)  # noqa: S102 - generated above
        assert repr(ns[b.name](modular.parse_call(d.input, b.name)[0])) == d.output
        assert modular.score(b, d.input, modular.extract(d.trace)) == 1.0
        assert modular.score(b, d.input, str(int(d.output) + 1)) == 0.0
    stages = curricula.build("proactive", ds, CurriculumConfig())
    assert [s.name for s in stages] == ["stage1", "stage2"] and all(s.rows for s in stages)
