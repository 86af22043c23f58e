"""``python -m pbb.cli``: the same as ``pbb``."""

from pbb.cli import main

main()
