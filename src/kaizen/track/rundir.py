"""The run directory: the record every other command reads.

Layout (DESIGN.md): config.yaml, meta.json, metrics.csv, summary.json, curves.png, checkpoints/{last,best}.pt.
Every file is written atomically (temporary file in the same folder, then rename), so a crash never leaves a
half-written record behind; the rename replaces whatever is at the name, a symbolic link included, and never
writes through one. A run directory has one writer: `RunLock` (RUN/.lock, the writer's pid and host).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from kaizen.errors import KaizenError, printable
from kaizen.version import __version__

METRIC_COLUMNS = ("epoch", "split", "loss", "acc", "lr", "seconds")
STATS_FILE = "stats.jsonl"  # per-layer statistics, one JSON record a line (kaizen.track.stats)
_UMASK = os.umask(0o022)  # reading the umask means setting it; put it straight back
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a partial one.

    The data goes to a new temporary file beside `path` (created exclusively: never an existing file or
    link), which is then renamed over `path`: a symbolic link at `path` is replaced by the file, and whatever
    it pointed to is left alone. An unwritable place (read-only, full disk, no such folder) is a KaizenError naming `path`; the file that
    was there is left as it was.
    """
    path = Path(path)
    try:
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise KaizenError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; a run's record is as readable as any file
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except OSError as error:
        _remove(tmp)
        raise KaizenError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str | Path) -> None:
    """Delete a temporary file if it is there; a folder that refuses (read-only) keeps it."""
    with contextlib.suppress(OSError):
        Path(path).unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically (UTF-8; a file name that is not valid UTF-8 is written escaped, see `printable`)."""
    atomic_write_bytes(path, printable(text).encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented for people."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_record(path: Path, data: Any) -> None:
    """Write a small JSON record (meta.json) atomically, or, when the disk is full, over the old file in place.

    The old file's own blocks hold the new text, so a run that fails for want of space still says why.
    """
    text = json.dumps(data, indent=2) + "\n"
    try:
        atomic_write_text(path, text)
    except KaizenError:
        if not Path(path).is_file():
            raise
        try:
            handle = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))  # never through a link
            with os.fdopen(handle, "r+b") as file:
                file.write(text.encode("utf-8"))
                file.truncate()
        except OSError as error:
            raise KaizenError(f"cannot write {path}: {error.strerror or error}") from None


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file of the run directory; KaizenError when it is missing, corrupt or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KaizenError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KaizenError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise KaizenError(
            f"{path} holds a JSON {_json_kind(data)}, not an object of named fields: it is damaged"
        )
    return data


def check_fields(
    data: dict[str, Any], path: Path, fields: dict[str, Any], required: tuple[str, ...] = ()
) -> None:
    """KaizenError naming the first field of `data` (read from `path`) that is missing (of `required`) or of
    the wrong JSON type (`fields`: name -> a type or tuple of types; None is allowed only where listed)."""
    for name in required:
        if name not in data:
            raise KaizenError(f"{path} has no '{name}': it is damaged")
    for name, types in fields.items():
        value = data.get(name)
        if name in data and not _fits(value, _as_tuple(types)):
            expected = " or ".join(_JSON_NAMES.get(kind, kind.__name__) for kind in _as_tuple(types))
            raise KaizenError(f"{path}: '{name}' should be {expected}, not {_json_kind(value)} {value!r:.40}")


_JSON_NAMES = {
    str: "text",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    bool: "true/false",
    type(None): "null",
}


def _fits(value: Any, types: tuple[type, ...]) -> bool:
    """isinstance, except that true/false is not a number here (JSON keeps them apart)."""
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _as_tuple(types: Any) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "number"
    )


META_FIELDS: dict[str, Any] = {
    "status": str,
    "seed": int,
    "start": (str, type(None)),
    "end": (str, type(None)),
    "pid": (int, type(None)),
    "host": (str, type(None)),
    "error": (str, type(None)),
    "device": (str, type(None)),
    "kaizen": (str, type(None)),
}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a checkpoint atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; KaizenError when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise KaizenError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file; the user needs one line
        raise KaizenError(f"checkpoint {path} cannot be read ({type(error).__name__})") from None


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Create `runs_dir/<yyyymmdd-hhmmss>-<name>/` (with a numeric suffix if taken) and return it."""
    runs_dir = Path(runs_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_name = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            suffix = "" if attempt == 1 else f"-{attempt}"
            path = runs_dir / f"{stamp}-{safe_name}{suffix}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / "checkpoints").mkdir()
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            return path
    except OSError as error:
        raise KaizenError(f"cannot write the run directory under {runs_dir}: {error.strerror}") from None
    raise KaizenError(f"too many runs named {safe_name} at {stamp} in {runs_dir}")


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """{dotted key: [old value, new value]} for every leaf of two config dicts that differs."""
    changes: dict[str, list[Any]] = {}
    for key in {**old, **new}:
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes.update(changed_keys(before, after, f"{prefix}{key}."))
        elif before != after:
            changes[f"{prefix}{key}"] = [before, after]
    return changes


def check_writable(folder: str | Path) -> None:
    """KaizenError unless `folder` exists and can be written, or can be created; nothing is created."""
    folder = Path(folder)
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise KaizenError(f"cannot write under {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise KaizenError(f"cannot write under {folder}: {existing} is not writable")


def process() -> dict[str, Any]:
    """The writing process, for meta.json: its pid and host (to tell a running run from a killed one)."""
    return {"pid": os.getpid(), "host": platform.node()}


LOCK_FILE = ".lock"
_TAKEOVER_TRIES = 5
_UNREADABLE_GRACE_SECONDS = 5.0  # a lock file without its content yet may be one being written


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host is alive (another user's live process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """The one writer of a run directory: RUN/.lock holds its pid, host and start, created exclusively.

    A live holder (or one on another host, which cannot be checked) makes `acquire` fail with one line; the
    lock of a process that is gone (this host, pid not alive) is taken over. `release` removes the lock only
    while this process holds it.
    """

    def __init__(self) -> None:
        self.path: Path | None = None
        self.owner = {"pid": os.getpid(), "host": platform.node()}

    def acquire(self, run_dir: str | Path) -> None:
        """Take RUN/.lock or raise KaizenError naming the process that writes the run."""
        path = Path(run_dir) / LOCK_FILE
        for _ in range(_TAKEOVER_TRIES):
            try:
                handle = os.open(
                    path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644
                )
            except FileExistsError:
                holder = _read_lock(path)
                if holder is None:  # being written this moment (or garbage): look again shortly
                    time.sleep(0.05)
                    holder = _read_lock(path)
                if holder is None and _age(path) < _UNREADABLE_GRACE_SECONDS:
                    raise KaizenError(
                        f"{path.parent} is being opened by another kaizen process ({path})"
                    ) from None
                if holder is not None and _holder_alive(holder):
                    raise KaizenError(
                        f"{path.parent} is being written by another kaizen process (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('since', '?')}); wait for it to end or stop it "
                        f"(delete {path} only if that process is gone)"
                    ) from None
                _take_over(path, holder)
                continue
            except OSError as error:
                raise KaizenError(f"cannot write {path}: {error.strerror or error}") from None
            with os.fdopen(handle, "w") as file:
                since = datetime.now(timezone.utc).isoformat(timespec="seconds")
                json.dump({**self.owner, "since": since}, file)
            self.path = path
            return
        raise KaizenError(f"cannot take the lock {path}: it keeps changing hands")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.path is None:
            return
        holder = _read_lock(self.path)
        if holder is not None and all(holder.get(key) == value for key, value in self.owner.items()):
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.path = None


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:  # gone: nothing to wait for
        return float("inf")


def _holder_alive(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if holder.get("host") != platform.node():
        return True  # another machine's process cannot be checked from here
    return isinstance(pid, int) and pid_alive(pid)


def _take_over(path: Path, stale: dict[str, Any] | None) -> None:
    """Remove the stale lock `stale` at `path`, and only it: it is first renamed aside (atomic), then checked;
    a lock another process took meanwhile is put back (a hard link, which never replaces a file)."""
    aside = path.with_name(f"{LOCK_FILE}.{secrets.token_hex(6)}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # someone else took it over: try again
    except OSError as error:
        raise KaizenError(f"cannot take over the stale lock {path}: {error.strerror or error}") from None
    if _read_lock(aside) != stale and stale is not None:
        with contextlib.suppress(OSError):
            os.link(aside, path)  # a fresh lock renamed by mistake goes back (unless a newer one is there)
    with contextlib.suppress(OSError):
        aside.unlink()


def status_of(meta: dict[str, Any]) -> str:
    """meta.json's status; a "running" run whose process is gone (same host) reads "running or killed: no live
    process", since a killed process records nothing."""
    status = meta.get("status", "unknown")
    pid = meta.get("pid")
    if status != "running" or not isinstance(pid, int) or meta.get("host") != platform.node():
        return status
    return status if pid_alive(pid) else "running or killed: no live process"


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine facts for meta.json."""

    return {
        "kaizen": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read metrics.csv as a list of rows with numbers parsed."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    parsed = []
    for row in rows:
        parsed.append(
            {
                "epoch": int(row["epoch"]),
                "split": row["split"],
                **{key: float(row[key]) for key in ("loss", "acc", "lr", "seconds")},
            }
        )
    return parsed


def format_metrics(rows: list[dict[str, Any]]) -> str:
    """Render metric rows as CSV text with the fixed column order."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _short(row[key]) for key in METRIC_COLUMNS})
    return out.getvalue()


def _short(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def read_stats(path: Path, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Read stats.jsonl: one dict per line with an integer `epoch` and a `kind`.

    A line that is not such a JSON object is skipped and `warn(message)` is told its line number. A missing
    file reads as no records.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with path.open(encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("epoch"), int) and "kind" in record:
                records.append(record)
            elif warn is not None:
                warn(f"{path.name} line {number} is corrupt and was skipped")
    return records
