"""A cell as straight-line torch code: one named variable per tree node, no interpretation at run time.

:func:`step_source` writes the source of one time step for a cell; :func:`compile_step` turns it into a
function (cached per cell). The same source is what ``nas export`` writes into a standalone module, so the
search-time cell and the exported cell run the very same statements.

The step's contract::

    step(x_proj, h_proj, c_prev) -> (h_next, c_next)
        x_proj: (B, N*H)  input projection of x_t for this step, bias included; chunk i belongs to leaf i
        h_proj: (B, N*H)  recurrent projection of h_{t-1}; chunk i belongs to leaf i
        c_prev: (B, H)    memory state c_{t-1}
"""

from __future__ import annotations

import functools
import linecache
from collections.abc import Callable

import torch

from search_spaces.cell import Cell, children

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

ACT_CODE = {"identity": "{}", "tanh": "torch.tanh({})", "sigmoid": "torch.sigmoid({})", "relu": "torch.relu({})"}
"""Each activation as a torch expression template."""
COMB_CODE = {"add": "{} + {}", "elem_mult": "{} * {}"}
"""Each combination of two values as a torch expression template."""


def step_source(cell: Cell, name: str = "cell_step", indent: str = "") -> str:
    """Python source of a TorchScript-compatible function ``name(x_proj, h_proj, c_prev) -> (h, c)``."""
    n = cell.base
    leaf_combs = {node.comb for node in cell.nodes[:n]}
    mem = cell.memory
    body = [
        f'"""One step of this cell: {cell.to_json()}"""',
    ]
    # Leaves: combine each input chunk with its recurrent chunk. Done on the whole (B, N*H) tensors and then
    # split, which is one op per comb kind instead of one per leaf; chunk i is leaf i's. `chunk` (one autograd
    # node) is ~20% cheaper in eager than `tensor_split` (one node per piece); the export swaps in tensor_split
    # because TorchScript mishandles partly-used chunks (see nas.runs.export.script_safe_step).
    for comb in sorted(leaf_combs):
        var = "sums" if comb == "add" else "prods"
        names = ", ".join(f"{var[0]}_{i}" for i in range(n))
        body.append(f"{var} = {COMB_CODE[comb].format('x_proj', 'h_proj')}  # (B, {n}*H)")
        body.append(f"{names} = {var}.chunk({n}, 1)")
    for k, node in enumerate(cell.nodes):
        kids = children(n, k)
        if kids is None:
            pre = f"{'s' if node.comb == 'add' else 'p'}_{k}"
        else:
            pre = COMB_CODE[node.comb].format(f"n{kids[0]}", f"n{kids[1]}")
        if mem is not None and mem.output_node == k:
            body.append(f"c_next = {pre}  # c_t: node {k} before its activation")
            pre = "c_next"
        body.append(f"n{k} = {ACT_CODE[node.act].format(pre)}")
        if mem is not None and mem.inject_node == k:
            injected = ACT_CODE[mem.inject_act].format(COMB_CODE[mem.inject_comb].format(f"n{k}", "c_prev"))
            body.append(f"n{k} = {injected}  # cell inject: c_(t-1) enters node {k}")
    if mem is None:
        body.append("c_next = c_prev  # no memory path")
    body.append(f"return n{cell.root}, c_next")
    sig = (
        f"def {name}(x_proj: torch.Tensor, h_proj: torch.Tensor, c_prev: torch.Tensor)"
        " -> Tuple[torch.Tensor, torch.Tensor]:"
    )
    inner = indent + "    "
    return "\n".join([indent + sig] + [inner + line for line in body]) + "\n"


def load_function(src: str, name: str, cell: Cell, scope: dict | None = None, label: str | None = None) -> Callable:
    """The function ``name`` defined by generated source ``src`` for ``cell`` (``torch`` and ``scope`` in scope).
    The source is registered with linecache under ``<label hash>`` (label defaults to ``name``), so tracebacks and
    inspect.getsource (which Triton reads) show the generated lines."""
    filename = f"<{label or name} {abs(hash(cell.to_json())):x}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    namespace: dict = {"torch": torch, "Tuple": tuple, **(scope or {})}
    exec(compile(src, filename, "exec"), namespace)
    return namespace[name]


@functools.lru_cache(maxsize=256)
def compile_step(cell: Cell) -> Step:
    """The cell's step as a Python function (see the module docstring); cached per cell."""
    return load_function(step_source(cell), "cell_step", cell)
