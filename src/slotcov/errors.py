"""Errors that mean "the user must fix something": the CLI prints them as one line."""


class UserError(Exception):
    """A bad config, missing file or corrupt input; the message names the thing and the fix."""


class DataError(UserError):
    """Input data failed a check (CRC, checksum, size, manifest)."""
