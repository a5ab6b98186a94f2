"""The one base class of errors in what a user gave a job (a config, a file, a checkpoint, a table).

Each layer raises its own subclass with a message that names the field, file or shape and what was
expected; ``uiface_ray.config.run_job`` prints any of them as one ``error: ...`` line and exits 2,
with no traceback.  Anything else is a bug and keeps its traceback."""


class InputError(Exception):
    """Unusable input; the message names it and says what was expected."""
