"""The one type of error a user can fix (bad input, settings or data): the CLI shows its message alone and
exits 2; any other exception is a bug and keeps its traceback."""


class UserError(ValueError):
    """Bad input, settings or data, with a message naming the file, column, row or config key."""
