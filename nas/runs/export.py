"""A searched cell as a standalone PyTorch module: one ``.py`` file that needs only torch, plus its spec JSON.

:func:`export_source` writes the file's text; :func:`write_export` writes it and ``<name>.json`` beside it, each
atomically. The generated file holds, in order:

- a docstring with the cell's formula, its hyperparameters and the spec JSON (tensorflow/addons ``nas_cell.py``
  style: the architecture is readable without running anything);
- ``SPEC``, the spec as a dict literal (``ChildSpec.from_dict(SPEC)`` gives the spec back);
- ``cell_step``, the straight-line step from :func:`workers.cell_code.step_source`, i.e. the very statements the
  search trained, one named variable per tree node (leaves split with ``tensor_split`` instead of ``chunk``,
  the same views; see :func:`script_safe_step`);
- ``<class_name>(input_size, hidden_size)``, one step: ``h, (h, c) = cell(x_t, (h, c))``;
- ``<class_name>RNN(input_size, hidden_size, num_layers, dropout)``, time-major like ``nn.LSTM``, whose state dict
  has the keys of :class:`workers.cell_rnn.CellRNN`, so trained weights load unchanged.

Both classes pass ``torch.jit.script``.
"""

from __future__ import annotations

import builtins
import json
import keyword
import math
import os
import re
import uuid
from pathlib import Path

from search_spaces import ChildSpec
from workers.cell_code import step_source

STEP_NAME = "cell_step"
"""Name of the generated module-level step function."""

_MODULE_NAMES = frozenset(
    {"torch", "nn", "F", "Tensor", "List", "Optional", "Tuple", "SPEC", "BASE", "__all__", STEP_NAME}
)
"""Names the generated module defines or imports; a class may not shadow them."""


def check_class_name(class_name: str) -> None:
    """Raise ValueError unless ``class_name`` (and ``class_name + "RNN"``) can name classes in the generated file."""
    if not isinstance(class_name, str) or not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise ValueError(
            f"class_name: {class_name!r} is not a valid Python class name; "
            "use letters, digits and _ not starting with a digit, and not a keyword (e.g. 'SearchedCell')"
        )
    taken = _MODULE_NAMES | set(dir(builtins))
    clash = [n for n in (class_name, class_name + "RNN") if n in taken]
    if clash:
        raise ValueError(
            f"class_name: {class_name!r} would make the generated file define {clash[0]!r}, which it already uses; "
            "pick another name (e.g. 'SearchedCell')"
        )


def _check_finite(spec: ChildSpec) -> None:
    """Reject NaN/inf hyperparameters, which neither a dict literal nor standard JSON can hold."""
    for name, value in spec.hparams.as_dict().items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"hparams.{name}: {value!r} cannot be exported; use a finite number")


def script_safe_step(step: str) -> str:
    """``step`` with each leaf split ``v.chunk(N, 1)`` written ``v.tensor_split(N, 1)``: the same N views.

    TorchScript turns ``chunk`` into ``prim::ConstantChunk``, and its autodiff mishandles one whose outputs are not all
    used (a step leaves unused every chunk of the comb kind a leaf does not take): from the second call of a scripted
    module that needs gradients, forward fails with "Argument passed to at() was not in the map" or backward with a
    size mismatch (torch 2.13; cf. pytorch/pytorch#54140). ``tensor_split`` stays an ordinary op and scripts cleanly.
    Numerically nothing changes (N*H always splits into N equal chunks). If ``step_source`` stops emitting ``chunk``,
    this returns ``step`` unchanged.
    """
    return re.sub(r"\.chunk\((\d+), 1\)", r".tensor_split(\1, 1)", step)


def _docstring(text: str) -> str:
    """``text`` as a triple-quoted literal whose value is exactly ``text``."""
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'


def _literal(value: object, indent: str = "") -> str:
    """``value`` (JSON-like data) as a Python literal: a dict one key per line, a list inline if short."""
    inner = indent + "    "
    if isinstance(value, dict) and value:
        items = [f"{inner}{k!r}: {_literal(v, inner)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and len(indent) + len(repr(value)) > 100:
        items = [f"{inner}{_literal(v, inner)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{indent}]"
    return repr(value)


def _module_doc(spec: ChildSpec, class_name: str) -> str:
    cell = spec.cell
    m = cell.memory
    memory = "no memory path" if m is None else f"c_{{t-1}} injected into n{m.inject_node}, c_t from n{m.output_node}"
    hparams = ", ".join(f"{k}={v!r}" for k, v in spec.hparams.as_dict().items()) or "none recorded"
    formula = "\n".join("    " + line for line in cell.formula().splitlines())
    return f"""{class_name}: a recurrent cell found by neural architecture search (Zoph & Le 2017 tree cell).

Generated by `nas export`; needs only torch. To change the cell, edit the spec and export again.

Cell: base {cell.base} ({2 * cell.base - 1} nodes), {memory}.
x_i = W_i x_t + b_i and h_i = U_i h_{{t-1}} are chunk i of input_proj(x_t) and hidden_proj(h_{{t-1}}).
{formula}

Hyperparameters: {hparams}

Spec JSON (also in SPEC):
    {spec.to_json()}

Usage (time-major, like nn.LSTM):
    rnn = {class_name}RNN(input_size, hidden_size, num_layers=2)
    out, (h_n, c_n) = rnn(x)                    # x (T, B, input_size) -> out (T, B, H), h_n, c_n (L, B, H)
    cell = {class_name}(input_size, hidden_size)
    h, (h, c) = cell(x_t, (h, c))               # one step, x_t (B, input_size), h, c (B, H)
The RNN's state dict has the keys of the search project's CellRNN (layers.i.input_proj.weight, ...).
"""


_CLASSES = '''

class {name}(nn.Module):
    """One step of the cell: ``h, (h, c) = cell(x_t, (h, c))``; ``unroll`` runs it over a sequence."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        # Leaf i uses chunk i (rows i*H .. (i+1)*H - 1) of both projections.
        self.input_proj = nn.Linear(input_size, BASE * hidden_size)
        self.hidden_proj = nn.Linear(hidden_size, BASE * hidden_size, bias=False)

    def forward(self, x_t: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        h_prev, c_prev = state  # (B, H) each
        h, c = {step}(self.input_proj(x_t), self.hidden_proj(h_prev), c_prev)  # (B, H) each
        return h, (h, c)

    @torch.jit.export
    def unroll(self, x: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """The cell over x (T, B, input_size); the input projection runs once for all T steps."""
        h, c = state  # (B, H) each
        x_proj = self.input_proj(x)  # (T, B, BASE*H)
        outputs: List[Tensor] = []
        for x_t in x_proj.unbind(0):  # (B, BASE*H)
            h, c = {step}(x_t, self.hidden_proj(h), c)
            outputs.append(h)
        return torch.stack(outputs), (h, c)  # (T, B, H)


class {name}RNN(nn.Module):
    """Stacked {name} layers, time-major, with dropout between layers (as ``nn.LSTM(dropout=...)``)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: {{num_layers}} is not allowed; use 1 or more")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList([{name}(size, hidden_size) for size in sizes])

    def forward(
        self, x: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        if state is None:
            h0 = x.new_zeros([self.num_layers, x.size(1), self.hidden_size])  # (L, B, H)
            c0 = torch.zeros_like(h0)
        else:
            h0, c0 = state  # (L, B, H) each
        hs: List[Tensor] = []
        cs: List[Tensor] = []
        out = x  # (T, B, input_size)
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0:
                out = F.dropout(out, self.dropout, self.training)
            out, (h, c) = layer.unroll(out, (h0[i], c0[i]))  # (T, B, H)
            hs.append(h)
            cs.append(c)
        return out, (torch.stack(hs), torch.stack(cs))  # (T, B, H), (L, B, H) each
'''


def export_source(spec: ChildSpec, class_name: str = "SearchedCell") -> str:
    """The text of a standalone module (torch and typing only) implementing ``spec``'s cell; see the module doc."""
    check_class_name(class_name)
    _check_finite(spec)
    parts = [
        _docstring(_module_doc(spec, class_name)),
        "",
        "from typing import List, Optional, Tuple",
        "",
        "import torch",
        "import torch.nn.functional as F",
        "from torch import Tensor, nn",
        "",
        f'__all__ = ["SPEC", "{STEP_NAME}", "{class_name}", "{class_name}RNN"]',
        "",
        f"SPEC = {_literal(spec.to_dict())}",
        '"""The exported spec: search_spaces.ChildSpec.from_dict(SPEC) rebuilds it."""',
        "",
        f"BASE = {spec.cell.base}",
        '"""Number of leaves: input_proj and hidden_proj each have BASE chunks of hidden_size rows."""',
        "",
        "",
        script_safe_step(step_source(spec.cell, STEP_NAME)).rstrip("\n"),
        _CLASSES.format(name=class_name, step=STEP_NAME).rstrip("\n"),
    ]
    return "\n".join(parts) + "\n"


def write_export(spec: ChildSpec, out: str | Path, class_name: str = "SearchedCell") -> tuple[Path, Path]:
    """Write the module to ``out`` (``*.py``) and the spec JSON to ``out`` with suffix ``.json``; return both paths.

    Everything is checked and generated before any file is touched. Both files are then written in full to
    temporary files in the same directory and only then moved into place with ``os.replace``, so an error leaves
    each file either as it was or complete, and no temporary file behind.
    """
    out = Path(out)
    if out.suffix != ".py":
        raise ValueError(f"out: {str(out)!r} does not end in .py; give a module path such as my_cell.py")
    if not out.parent.is_dir():
        raise ValueError(f"out: directory {str(out.parent)!r} does not exist; create it first or pick an existing one")
    if out.is_dir():
        raise ValueError(f"out: {str(out)!r} is a directory; give a file path such as {str(out / 'my_cell.py')!r}")
    json_path = out.with_suffix(".json")
    texts = {out: export_source(spec, class_name), json_path: json.dumps(spec.to_dict(), indent=2) + "\n"}
    temps: dict[Path, Path] = {}
    try:
        for path, text in texts.items():
            temps[path] = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            with open(temps[path], "x", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)  # already gone after a successful replace
    return out, json_path
