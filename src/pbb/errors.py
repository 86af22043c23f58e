"""One error type for everything a user can get wrong.

The CLI prints a :class:`PbbError` as a single line and exits non-zero; anything else is a bug and
keeps its traceback. Raising this type is therefore a promise that the message alone tells the user
what is wrong and where.
"""


class PbbError(Exception):
    """A user-facing error: bad input, bad config, missing model. Printed as one line."""


def first_line(e: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message`` of a library's exception, for a one-line PbbError."""
    text = str(e).splitlines()[0][:limit] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
