"""``python -m pbb.cli``: the same as ``pbb``."""

from pbb.cli import main

if __name__ == "__main__":
    main()
