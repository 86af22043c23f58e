"""One error type for everything a user can get wrong.

The CLI prints a :class:`PbbError` as a single line and exits non-zero; anything else is a bug and
keeps its traceback. Raising this type is therefore a promise that the message alone tells the user
what is wrong and where.
"""


class PbbError(Exception):
    """A user-facing error: bad input, bad config, missing model. Printed as one line."""
