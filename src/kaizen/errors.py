"""The one exception type that reaches the user as a single clear line (exit code 2)."""


def one_line(text: str) -> str:
    """`text` with its line breaks and other control characters escaped, so a message stays one line; a file
    name's bytes that are not UTF-8 are shown as \\xNN (see `printable`)."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode() for char in printable(text)
    )


def printable(text: str) -> str:
    """`text` safe to write as UTF-8: a file name's bytes that are not valid UTF-8 (which Python carries as lone
    surrogates, os.fsdecode's surrogateescape) become `\\xff`, as repr shows bytes; other lone surrogates
    `\\udXXX`."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    return "".join(_escaped(char) if "\ud800" <= char <= "\udfff" else char for char in text)


def _escaped(surrogate: str) -> str:
    if "\udc80" <= surrogate <= "\udcff":  # one byte of a file name, as surrogateescape carries it
        return f"\\x{ord(surrogate) - 0xDC00:02x}"
    return surrogate.encode("utf-8", "backslashreplace").decode()


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
