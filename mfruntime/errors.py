"""Errors that mean "the user can fix this": the CLI prints them as one line, without a traceback."""


class UserFacingError(Exception):
    """Base for problems with the user's files or settings (corrupt checkpoint, missing stage output, ...)."""
