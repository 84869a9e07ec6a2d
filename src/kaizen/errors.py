"""The one exception type that reaches the user as a single clear line (exit code 2)."""


def one_line(text: str) -> str:
    """`text` with its line breaks and other control characters escaped, so a message stays one line."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in text)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 file`, `2 files`, `1,297 images`: a count with its noun in the right number."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


class KaizenError(Exception):
    """Bad input from the user: a config, a file, a run directory. The message names the culprit.

    The message is one line whatever the culprit holds (a key with a line break is shown escaped)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class KaizenWarning(UserWarning):
    """Input kaizen accepts but doubts (an empty config, a repeated key); the CLI prints it as one line."""
