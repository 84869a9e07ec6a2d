"""Download of the MNIST-family IDX files: official mirrors in order, retries, MD5, atomic rename.

A file is streamed into a temporary file beside its destination, its MD5 is checked, and only then is it
renamed into place, so an interrupted or corrupt download never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from kaizen.errors import KaizenError

log = logging.getLogger(__name__)

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MIRRORS: dict[str, list[str]] = {
    # yann.lecun.com often refuses automated downloads now, so the PyTorch S3 copy comes first
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    "kmnist": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
}

CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
}

_CHUNK = 1 << 20
_USER_AGENT = "kaizen (+https://pypi.org/project/kaizen)"


class _ChecksumMismatch(Exception):
    """The mirror served a complete file with the wrong content: try the next mirror, not again."""


def file_md5(path: str | Path) -> str:
    """Return the hex MD5 digest of a file."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    name: str,
    dest_dir: str | Path,
    mirrors: Sequence[str],
    md5: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Download `name` from the first mirror that serves it intact into `dest_dir`; return its path.

    Each mirror gets `retries` attempts with exponential backoff (backoff, 2*backoff, ...) on transient
    errors; a 4xx answer or a checksum mismatch moves on to the next mirror at once.
    """
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KaizenError(f"cannot create download folder {dest_dir} ({error.strerror or error})") from None
    target = dest_dir / name
    failures = {}  # the last error of each URL, so the message stays one readable line
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        for attempt in range(retries):
            try:
                _fetch(url, target, md5, timeout)
                log.info("downloaded %s", url)
                return target
            except _ChecksumMismatch as error:
                failures[url] = str(error)
                break
            except urllib.error.HTTPError as error:
                failures[url] = f"HTTP {error.code}"
                if 400 <= error.code < 500 and error.code not in (408, 429):
                    break
            except (urllib.error.URLError, OSError) as error:
                failures[url] = str(getattr(error, "reason", None) or error)
            if attempt + 1 < retries:
                time.sleep(backoff * 2**attempt)
    tried = "; ".join(f"{url}: {reason}" for url, reason in failures.items()) or "no mirrors given"
    raise KaizenError(f"could not download {name} into {dest_dir} ({tried})")


def download_dataset(
    dataset: str,
    dest_dir: str | Path,
    mirrors: Sequence[str] | None = None,
    files: Sequence[str] = IDX_FILES,
    retries: int = 3,
    backoff: float = 1.0,
) -> list[Path]:
    """Download the IDX files of `dataset` (mnist, fashion-mnist, kmnist) that `dest_dir` lacks.

    Returns the paths of all `files`. `mirrors` replaces the official list (tests serve local files).
    """
    if dataset not in MIRRORS:
        raise KaizenError(f"no download source for dataset '{dataset}'; known: {', '.join(MIRRORS)}")
    checksums = CHECKSUMS.get(dataset, {})
    dest_dir = Path(dest_dir)
    created = [folder for folder in (dest_dir, *dest_dir.parents) if not folder.exists()]
    paths = []
    try:
        for name in files:
            target = dest_dir / name
            if not target.is_file():
                download_file(
                    name,
                    dest_dir,
                    mirrors or MIRRORS[dataset],
                    checksums.get(name),
                    retries=retries,
                    backoff=backoff,
                )
            paths.append(target)
    except BaseException:
        for folder in created:  # a failed download leaves no empty folders behind (innermost first)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return paths


def _fetch(url: str, target: Path, md5: str | None, timeout: float) -> None:
    """Stream `url` into a temporary file beside `target`, check its MD5, then rename it into place."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    os.chmod(temp_name, 0o666 & ~umask)  # mkstemp makes 0600 files; data is as readable as any download
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for block in iter(lambda: response.read(_CHUNK), b""):
                digest.update(block)
                out.write(block)
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise _ChecksumMismatch(f"MD5 {digest.hexdigest()} does not match the expected {md5}")
        os.replace(temp_name, target)
    finally:
        # after a successful rename the temporary name is gone; anything else must not stay behind
        if os.path.exists(temp_name):
            os.unlink(temp_name)
