"""pbb: Programming by Backprop.

Teach a language model to *carry out* behaviours (functions, ciphers, grammars) that it only ever
saw as instructions in training, and measure how well that works.
"""

from pbb import _moved

__version__ = "0.1.0"

_moved.install()
