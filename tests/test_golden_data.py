"""The same seed gives the same bytes, across commits: generated behaviours, demonstrations and
rendered training rows of every domain against fingerprints recorded in tests/data.

A refactor must leave these unchanged. An intended change of the data updates them with
``python tests/golden.py > tests/data/golden_sha256.json`` and says so in its commit.
"""

import json

import pytest
from golden import CASES, GOLDEN, fingerprints


@pytest.fixture(scope="module")
def current():
    return fingerprints()


def test_every_domain_has_a_recorded_fingerprint(current):
    from pbb.domains import DOMAINS

    recorded = json.loads(GOLDEN.read_text())
    assert set(current) == set(recorded)
    covered = {domain for domain, _ in CASES.values()} | {"imported"}  # imported: FUNCTIONS
    assert set(DOMAINS) <= covered


@pytest.mark.parametrize("key", sorted(json.loads(GOLDEN.read_text())))
def test_data_unchanged(current, key):
    assert current[key] == json.loads(GOLDEN.read_text())[key], (
        f"{key} changed: the same seed no longer gives the same data (see this file's docstring)")
