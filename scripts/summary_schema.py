"""Write docs/summary.schema.json, the JSON Schema of a run's summary.json, from
:class:`pbb.records.Summary`. ``--check``: exit 1 when the shipped file is stale."""

import json
import sys
from pathlib import Path

from pbb.records import summary_schema

OUT = Path(__file__).resolve().parent.parent / "docs" / "summary.schema.json"


def render() -> str:
    return json.dumps(summary_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if OUT.is_file() and OUT.read_text() == render() else 1)
    OUT.write_text(render())
    print(f"wrote {OUT}")
