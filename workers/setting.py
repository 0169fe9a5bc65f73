"""A setting, declared once: a field of a frozen settings dataclass with its default, the values it allows and,
where the ``nas`` command has a flag for it, ``flag=True``; the attribute docstring under it is its documentation::

    hidden_size: int = setting(200, low=1)
    \"\"\"Units per cell layer (H).\"\"\"

From that one declaration come the check of every value (:func:`check`, called by each class's ``__post_init__``:
one line that names the setting, the bad value and what to use instead), the TOML reader (:mod:`nas.config`: "none"
and "auto" spell None) and the command-line flags with their help (:func:`flags`, used by :mod:`nas.cli`). Checks
that tie several settings together stay in the class's ``__post_init__``, after :func:`check`.

No torch here: settings are read without it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import re
import textwrap
import types
import typing
from collections.abc import Sequence
from typing import Any


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, low: float | None = None,
            above: float | None = None, below: float | None = None, choices: Sequence[Any] | None = None,
            none: str = "none", none_means: str = "", note: str = "", flag: bool = False) -> Any:
    """A dataclass field declared with what it allows.

    ``low`` (>=), ``above`` (>) and ``below`` (<) bound a number; ``choices`` lists the allowed values. A field whose
    type admits None is spelled ``none`` in TOML and on the command line ("none", or "auto" where None means "pick
    for the machine"); ``none_means`` says what it does, for the error message (e.g. "to never checkpoint"), and
    ``note`` what a special value means (e.g. "0: never stop early").
    ``flag``: ``nas search`` / ``nas train`` offer it as ``--name-with-dashes``."""
    meta = {"low": low, "above": above, "below": below, "choices": tuple(choices) if choices is not None else None,
            "none": none, "none_means": none_means, "note": note, "flag": flag}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _options(tp: Any) -> tuple[Any, ...]:
    """The types a field's annotation admits (``int | None`` -> (int, NoneType))."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def fields(cls: type) -> dict[str, dataclasses.Field]:
    """The dataclass fields of ``cls`` by name, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def kind(cls: type, name: str) -> type | None:
    """The scalar type (bool, int, float or str) of field ``name``, None for anything else (a table, a tuple)."""
    scalars = [t for t in _options(_hints(cls)[name]) if t in (bool, int, float, str)]
    return scalars[0] if len(scalars) == 1 else None


def optional(cls: type, name: str) -> bool:
    return type(None) in _options(_hints(cls)[name])


def _bounds(meta: dict[str, Any], whole: bool) -> str:
    low, above, below = meta.get("low"), meta.get("above"), meta.get("below")
    noun = "a whole number" if whole else "a number"
    if low is not None and below is not None:
        return f"{noun} in [{low:g}, {below:g})"
    if above is not None and below is not None:
        return f"{noun} in ({above:g}, {below:g})"
    if above == 0 and not whole:
        return "a positive number"
    if low is not None:
        return f"{noun} >= {low:g}"
    if above is not None:
        return f"{noun} > {above:g}"
    if below is not None:
        return f"{noun} < {below:g}"
    return noun


def rule(cls: type, name: str) -> str:
    """What field ``name`` allows, in words: "a whole number >= 1, or none", "true or false", ..."""
    f = fields(cls)[name]
    meta, k = f.metadata, kind(cls, name)
    if meta.get("choices") is not None:
        text = "one of " + ", ".join(str(c) for c in meta["choices"])
    elif k is bool:
        text = "true or false"
    elif k is str:
        text = "text"
    else:
        text = _bounds(meta, whole=k is int)
    if optional(cls, name):
        text += f", or {meta.get('none', 'none')}" + (f" {meta['none_means']}" if meta.get("none_means") else "")
    return text + (f" ({meta['note']})" if meta.get("note") else "")


def _allowed(meta: Any, k: type | None, v: Any) -> bool:
    if k is bool:
        ok = isinstance(v, bool)
    elif k is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif k is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    elif k is str:
        ok = isinstance(v, str)
    else:
        return True
    if ok and k in (int, float):
        ok = ((meta.get("low") is None or v >= meta["low"]) and (meta.get("above") is None or v > meta["above"])
              and (meta.get("below") is None or v < meta["below"]))
    return ok and (meta.get("choices") is None or v in meta["choices"])


def check(obj: Any, section: str) -> None:
    """Check every scalar field of the settings dataclass ``obj`` against its declaration (a ValueError naming
    ``section.name``, the value and what to use), and store a float field's whole number as a float."""
    cls = type(obj)
    for f in dataclasses.fields(cls):
        k, v = kind(cls, f.name), getattr(obj, f.name)
        if k is None or (v is None and optional(cls, f.name)):
            continue
        if not _allowed(f.metadata, k, v):
            key = f"{section}.{f.name}" if section else f.name
            if f.metadata.get("choices") is not None and isinstance(v, k):
                raise ValueError(f"{key}: {v!r} is not one of {', '.join(str(c) for c in f.metadata['choices'])}")
            raise ValueError(f"{key}: {v!r} is not allowed; use {rule(cls, f.name)}")
        if k is float and isinstance(v, int):
            object.__setattr__(obj, f.name, float(v))


@functools.cache
def docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring (the string literal right under it in the class body), read from the source;
    empty where the source cannot be read."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            out[node.target.id] = inspect.cleandoc(after.value.value)
    return out


def summary(cls: type, name: str) -> str:
    """The first sentence of field ``name``'s docstring, as plain text (for a flag's help)."""
    text = " ".join(docs(cls).get(name, "").split("\n\n")[0].split())
    end = re.search(r"(?<!et al)\.\s+(?=[A-Z])", text)
    return (text if end is None else text[: end.start() + 1]).replace("``", "")


def flags(cls: type) -> list[str]:
    """The names of the fields of ``cls`` declared with ``flag=True``, in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("flag")]
