"""What produced a benchmark's run folder: the code version and a hash of the settings, written next to the run and
checked before the run is read back, so that a re-run never mixes results of other code or settings.

The code is identified by a hash of the source files that decide a result (``nas/``, ``workers/``,
``search_spaces/`` and the benchmark's own files), which a commit of documentation or results does not change;
the git commit and whether the tree was dirty are recorded beside it for the reader.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("nas", "workers", "search_spaces")
PROVENANCE_FILE = "provenance.json"


def source_hash(extra: tuple[str, ...] = (), code_dirs: tuple[str, ...] = CODE_DIRS) -> str:
    """SHA-256 (first 16 hex digits) over the ``.py`` files of ``code_dirs`` and the ``extra`` files (paths
    relative to the repository root), names and contents, in a fixed order."""
    h = hashlib.sha256()
    files = sorted(p for d in code_dirs for p in (ROOT / d).rglob("*.py")) + [ROOT / e for e in sorted(extra)]
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def git_commit() -> tuple[str, bool]:
    """(HEAD's commit, whether tracked files differ from it); ("unknown", True) outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip() != ""
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return commit, dirty


def settings_hash(settings: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(settings: Mapping[str, Any], extra: tuple[str, ...] = (),
               code_dirs: tuple[str, ...] = CODE_DIRS) -> dict[str, Any]:
    """The record :func:`write` stores and :func:`mismatch` checks."""
    commit, dirty = git_commit()
    return {"source_hash": source_hash(extra, code_dirs), "code_dirs": list(code_dirs),
            "settings_hash": settings_hash(settings), "commit": commit,
            "dirty": dirty, "settings": dict(settings)}


def write(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def mismatch(path: Path, record: Mapping[str, Any], results: str = "") -> str:
    """Why the results ``path`` describes (``results``: their name in the message) cannot be read back as produced by
    ``record``'s code and settings ("" when they can): no provenance file, other code, or other settings."""
    what = results or str(path.parent)
    if not path.exists():
        return f"{what} has no {path.name} (made by an older benchmark)"
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return f"{path} is not valid JSON"
    if old.get("settings_hash") != record["settings_hash"]:
        return f"{what} was made with other settings ({old.get('settings_hash')} vs {record['settings_hash']})"
    if old.get("source_hash") != record["source_hash"]:
        return (f"{what} was made by other code (source {old.get('source_hash')} at commit "
                f"{str(old.get('commit'))[:10]}{' dirty' if old.get('dirty') else ''}, now {record['source_hash']})")
    return ""
