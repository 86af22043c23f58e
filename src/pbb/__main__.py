"""``python -m pbb`` is the ``pbb`` command (also under ``accelerate launch -m pbb``)."""

from pbb.cli import main

if __name__ == "__main__":
    main()
