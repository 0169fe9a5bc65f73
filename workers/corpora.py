"""Which corpora there are and which one a search names, without loading any (no torch): what the table commands
(`nas results`, `nas compare`) need to know of a run's data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from workers.download import DATASETS
from workers.setting import check, setting

BUNDLED = ("shakespeare",)
"""Names of the corpora shipped inside the package."""

LEVELS = ("auto", "word", "char")
"""Allowed ``level`` arguments; ``auto`` is ``char`` for bundled corpora and ``word`` for directories."""

BUNDLED_LEVEL = {"shakespeare": "char"}
"""The tokenisation ``auto`` means for each bundled corpus."""


def resolved_level(source: str | os.PathLike[str], level: str = "auto") -> str:
    """The tokenisation ``load_corpus(source, level)`` uses: ``level``, or for "auto" char for a bundled corpus
    and word for a directory."""
    if level != "auto":
        return level
    return BUNDLED_LEVEL[source] if isinstance(source, str) and source in BUNDLED else "word"


@dataclass(frozen=True)
class DataConfig:
    """Which corpus children train on."""

    dataset: str = setting("shakespeare", flag=True)
    """A bundled corpus (shakespeare), ptb or wikitext-2 (with data_dir), or a directory of split files."""
    data_dir: str | None = setting(None, flag=True)
    """Directory holding the ptb / wikitext-2 files (see `nas data download`)."""
    level: str = setting("auto", choices=LEVELS, flag=True)
    """"word", "char", or "auto" (char for the bundled corpus, word for directories)."""

    def __post_init__(self) -> None:
        check(self, "data")
        if self.dataset in DATASETS and not self.data_dir:
            raise ValueError(
                f"data.dataset: {self.dataset} needs a directory with its files; pass --data-dir DIR "
                f"(fetch them with `nas data download {self.dataset} DIR`)"
            )

    @property
    def source(self) -> str:
        """What to hand to ``workers.data.load_corpus``."""
        if self.dataset in BUNDLED and not self.data_dir:
            return self.dataset
        return self.data_dir or self.dataset
