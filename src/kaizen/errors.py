"""The one exception type that reaches the user as a single clear line (exit code 2)."""


class KaizenError(Exception):
    """Bad input from the user: a config, a file, a run directory. The message names the culprit."""


class KaizenWarning(UserWarning):
    """Input kaizen accepts but doubts (an empty config, a repeated key); the CLI prints it as one line."""
