"""pbb: Programming by Backprop.

Teach a language model to *carry out* behaviours (functions, ciphers, grammars) that it only ever
saw as instructions in training, and measure how well that works.

The Python API is the functions of :data:`__all__` (:mod:`pbb.api`)::

    ds = pbb.make_data("arithmetic", behaviours=40, out="data/arith")
    print(pbb.plan({"curricula": ["proactive", "stage1_only"]}, "runs/mine", data=ds))
    summary = pbb.run({"curricula": ["proactive", "stage1_only"]}, "runs/mine", data=ds)

(A config's data keys must agree with the data set it runs on, or be left out: the bundled
configs name their own data, so a data set of another size runs with a config of your own.)

They load on first use, so ``import pbb`` imports neither torch nor transformers.
"""

import sys
import types

from pbb import _moved
from pbb._version import __version__ as __version__  # (re-exported: pbb.__version__)

__all__ = ["load_config", "make_data", "load_data", "build_stages", "plan", "run", "evaluate",
           "score"]


class _Package(types.ModuleType):
    """The ``pbb`` module: its API names resolve to :mod:`pbb.api`'s functions on first use.

    Three of them (``run``, ``evaluate``, ``score``) are also module names of the flat layout
    that still import (:mod:`pbb._moved`); importing one must not replace the function on the
    package, so a module is never bound to an API name here.
    """

    def __getattr__(self, name: str):
        if name in __all__:
            from pbb import api

            value = getattr(api, name)
            super().__setattr__(name, value)
            return value
        raise AttributeError(f"module 'pbb' has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(__all__))


sys.modules[__name__].__class__ = _Package
_moved.install()
