"""The one exception type for mistakes a user can make (bad config, bad data, missing model)."""


class MosgymError(Exception):
    """A user-facing error: the message says what was wrong, where, and how to fix it.

    The CLI prints only the message (one line) and exits non-zero; internal bugs raise other
    exception types and keep their traceback.
    """
