"""The search: the controller and its REINFORCE update, regularized evolution, the Ray Tune searchers, and the
driver that runs a search (:mod:`nas.search.driver`)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # `from nas.search import run_search` keeps working, but lazily: importing a light module of this package
    # (the controller, the evolution's population) must not start Ray.
    if name == "run_search":
        from nas.search.driver import run_search

        return run_search
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
