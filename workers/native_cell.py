"""A cell's whole element-wise step as one generated C function forward and one backward, for CPUs.

The fused torch path (:mod:`workers.fused_cell`) dispatches some 30 small operations per time step forward and
45 backward; on a CPU each costs a few microseconds of dispatch for less work than that at a child's sizes, so
small children train at well under the speed of their matrix products. Here, as with the Triton kernels on a GPU
(:mod:`workers.triton_cell`), each step is the recurrent matrix product (torch) and one call into C that computes
every leaf, node, the memory injection and ``c_t`` for the whole batch; backward, one call that recomputes the
step's nodes from the projections and ``c_{t-1}`` and applies the chain rule, then the matrix product for
``h_{t-1}``'s gradient; the recurrent weight's gradient is one matrix product over all steps at the end.

The C source is generated from the tree (:mod:`workers.kernel_source`), compiled once with the system compiler
(``$CC`` or ``cc``; :data:`FLAGS`: ``-O3 -march=native``, the inner loop over hidden units vectorised; no threads: a
step's element-wise work takes 9-94 µs at the sizes measured, bench/RESULTS.md 2026-12-03), and cached on disk under
:func:`cache_dir` by a hash of the source, the compiler, its flags and the CPU. Each library has a SHA-256 sidecar:
a cached library whose bytes do not match it is rebuilt, never loaded. The float32 functions use a vectorisable exp
(Cephes' polynomial, within a few ulp) and Cephes' tanh; the float64 ones call libm (they exist for tests and
``gradcheck``).

:func:`load` raises :class:`NativeUnavailable` with the reason (no compiler, a compile error, a library that does
not load); :func:`workers.cell_rnn.kernel_path` turns that into the torch path with one warning per process.

Function contract, per time step, every buffer contiguous, ``T`` = ``float`` (``_f32``) or ``double`` (``_f64``),
(B, N*H) projections with chunk i belonging to leaf i::

    cell_forward_f32(xp, hp, c_prev, h_out, c_out, B, H)
    cell_backward_f32(g_out, gh, gc, xp, hp, c_prev, g_xp, g_hp, gc_prev, B, H)
        g_out + gh: gradient w.r.t. this step's h; gc: w.r.t. its c; writes g_xp / g_hp (gradients w.r.t. xp / hp;
        g_hp is not written when every leaf adds, the two are then equal) and gc_prev
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from search_spaces.cell import Cell
from workers.kernel_sequence import Backward
from workers.kernel_source import all_leaves_add, chain_rule, forward_tree, leaf_gradients

FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fopenmp-simd", "-fno-math-errno", "-std=c99")
"""Compiler flags (no ``-ffast-math``: NaN and infinity behave as in torch, so a diverging child fails alike)."""
DTYPES = {torch.float32: "f32", torch.float64: "f64"}
"""The tensor dtypes a kernel exists for (bfloat16 and float16 run on the torch path)."""
COMPILE_TIMEOUT_S = 60

_C_TYPE = {"f32": "float", "f64": "double"}
_ACT = {  # per C type: the activation templates
    "f32": {"identity": "{}", "tanh": "tanh_f32({})", "sigmoid": "sigmoid_f32({})", "relu": "relu_f32({})"},
    "f64": {"identity": "{}", "tanh": "tanh({})", "sigmoid": "sigmoid_f64({})", "relu": "relu_f64({})"},
}
_DACT = {  # gradient through an activation from the incoming gradient g and the activation's output y
    "identity": "{g}",
    "tanh": "{g} * (1 - {y} * {y})",
    "sigmoid": "{g} * {y} * (1 - {y})",
    "relu": "({y} > 0 ? {g} : 0)",
}
_HELPERS = r"""#include <math.h>
#include <stdint.h>

/* exp for float32 without a libm call, so that the loops vectorise: Cephes' expf (x = n ln 2 + r, a degree-5
   polynomial in r), within a few ulp. Like expf it gives +inf above 88.72, 0 far below (here from -86.6, where
   expf's results approach the subnormals, which training flushes anyway) and NaN for NaN. */
static inline float exp_f32(float x) {
    float r = x > 88.72f ? 88.72f : x;
    r = r < -86.6f ? -86.6f : r;
    r = r != r ? 0.0f : r;  /* NaN: computed as 0, returned as NaN below */
    float nf = rintf(r * 1.44269504088896341f);
    r = r - nf * 0.693359375f + nf * 2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    union { uint32_t i; float f; } half_scale = { (uint32_t)((int32_t)nf + 126) << 23 };  /* 2^(n-1) */
    y = 2.0f * (y * half_scale.f);
    y = x > 88.72f ? INFINITY : y;
    y = x < -86.6f ? 0.0f : y;
    return x != x ? x : y;
}

/* Cephes' tanhf: an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above; NaN stays NaN. */
static inline float tanh_f32(float x) {
    float a = fabsf(x);
    float s = x * x;
    float p = (((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s
               + 1.33314422036e-1f) * s - 3.33332819422e-1f;
    float small = p * s * x + x;
    float big = 1.0f - 2.0f / (exp_f32(2.0f * a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}

static inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
static inline float relu_f32(float x) { return x < 0.0f ? 0.0f : x; }
static inline double sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double relu_f64(double x) { return x < 0.0 ? 0.0 : x; }
"""


class NativeUnavailable(RuntimeError):
    """A cell's C kernels cannot be built or loaded here; the message says why."""


def c_source(cell: Cell) -> str:
    """The C source of both functions (see the module docstring) for float32 and float64."""
    parts = [f"/* One step of this cell, forward and backward: {cell.to_json()} */\n", _HELPERS]
    for suffix in ("f32", "f64"):
        parts += [_forward_function(cell, suffix), _backward_function(cell, suffix)]
    return "\n".join(parts)


def _loads(cell: Cell, real: str) -> list[str]:
    n = cell.base
    lines = [f"const {real} x_{i} = xb[{i} * H + j], h_{i} = hb[{i} * H + j];" for i in range(n)]
    return lines + [f"const {real} c_prev_v = cb[j];"]


def _declare(assignments: list[tuple[str, str]], real: str) -> list[str]:
    """C statements for ``(name, expression)`` pairs: the first assignment of a name declares it."""
    seen: set[str] = set()
    lines = []
    for name, expr in assignments:
        lines.append(f"{name} = {expr};" if name in seen else f"{real} {name} = {expr};")
        seen.add(name)
    return lines


def _function(signature: str, row_setup: list[str], body: list[str]) -> str:
    inner = "".join(f"            {line}\n" for line in body)
    setup = "".join(f"        {line}\n" for line in row_setup)
    return (f"void {signature} {{\n    for (long b = 0; b < B; b++) {{\n{setup}"
            f"        #pragma omp simd\n        for (long j = 0; j < H; j++) {{\n{inner}        }}\n    }}\n}}\n")


def _forward_function(cell: Cell, suffix: str) -> str:
    real, n = _C_TYPE[suffix], cell.base
    signature = (f"cell_forward_{suffix}(const {real} *restrict xp, const {real} *restrict hp, "
                 f"const {real} *restrict c_prev, {real} *restrict h_out, {real} *restrict c_out, long B, long H)")
    setup = [f"const {real} *xb = xp + b * {n} * H, *hb = hp + b * {n} * H, *cb = c_prev + b * H;",
             f"{real} *ho = h_out + b * H, *co = c_out + b * H;"]
    body = _loads(cell, real) + _declare(forward_tree(cell, _ACT[suffix]), real)
    body += [f"ho[j] = z{cell.root};", "co[j] = c;", "(void)c_prev_v;"]
    return _function(signature, setup, body)


def _backward_function(cell: Cell, suffix: str) -> str:
    real, n = _C_TYPE[suffix], cell.base
    signature = (f"cell_backward_{suffix}(const {real} *restrict g_out, const {real} *restrict gh, "
                 f"const {real} *restrict gc, const {real} *restrict xp, const {real} *restrict hp, "
                 f"const {real} *restrict c_prev, {real} *restrict g_xp, {real} *restrict g_hp, "
                 f"{real} *restrict gc_prev, long B, long H)")
    setup = [f"const {real} *xb = xp + b * {n} * H, *hb = hp + b * {n} * H, *cb = c_prev + b * H;",
             f"const {real} *gob = g_out + b * H, *ghb = gh + b * H, *gcb = gc + b * H;",
             f"{real} *gxb = g_xp + b * {n} * H, *gcp = gc_prev + b * H;",
             f"{real} *ghpb = g_hp ? g_hp + b * {n} * H : 0;"]
    assignments = forward_tree(cell, _ACT[suffix])
    assignments += [(f"g{cell.root}", "gob[j] + ghb[j]"), ("gc_v", "gcb[j]")]
    assignments += chain_rule(cell, _DACT)
    body = _loads(cell, real) + _declare(assignments, real)
    gx, gh = leaf_gradients(cell)
    body += [f"gxb[{i} * H + j] = {g};" for i, g in enumerate(gx)]
    body += [f"ghpb[{i} * H + j] = {g};" for i, g in enumerate(gh or ())]
    body += ["gcp[j] = gc_prev_v;", "(void)c; (void)gc_v;"]
    if gh is None:
        body.append("(void)ghpb;")
    return _function(signature, setup, body)


def cache_dir() -> Path:
    """Where compiled cells are kept: ``$NAS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/nas/cells``, else
    ``~/.cache/nas/cells``. Safe to delete at any time (each cell is rebuilt on its next use)."""
    if os.environ.get("NAS_KERNEL_CACHE"):
        return Path(os.environ["NAS_KERNEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas" / "cells"


def compiler() -> str:
    """The C compiler: ``$CC``, else ``cc``."""
    return os.environ.get("CC") or "cc"


def _toolchain(cc: str) -> str:
    """What a compiled library depends on besides its source: the compiler's identity and flags, and the CPU
    (``-march=native``). Raises NativeUnavailable when the compiler is missing or does not run."""
    path = shutil.which(cc)
    if path is None:
        raise NativeUnavailable(f"no C compiler: {cc!r} is not on PATH (install gcc or clang, or set CC)")
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"the C compiler {path} does not run ({type(e).__name__}: {e})") from e
    cpu = platform.machine() + platform.processor()
    try:
        cpu += next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return "\n".join([path, version.split("\n")[0], " ".join(FLAGS), cpu])


def toolchain() -> str:
    """The compiler, its version, the flags and the CPU that a library is built for (part of its cache key);
    raises NativeUnavailable when there is no working compiler. Looked up once per process and compiler."""
    return _remembered(_toolchains, compiler(), _toolchain)


_toolchains: dict[str, str | NativeUnavailable] = {}
_loaded: dict[Cell, NativeKernels | NativeUnavailable] = {}


def _remembered(memo: dict, key, make):
    """``make(key)``, computed once per key, its NativeUnavailable included (a failed build is not retried at
    every forward pass)."""
    if key not in memo:
        try:
            memo[key] = make(key)
        except NativeUnavailable as e:
            memo[key] = e
    if isinstance(memo[key], NativeUnavailable):
        raise memo[key]
    return memo[key]


def library_path(cell: Cell) -> Path:
    """Where ``cell``'s compiled library is cached (see :func:`cache_dir`)."""
    return _library_path(c_source(cell))


def _library_path(source: str) -> Path:
    key = hashlib.sha256((toolchain() + "\n" + source).encode()).hexdigest()[:32]
    return cache_dir() / f"cell-{key}.so"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(cell: Cell) -> Path:
    """``cell``'s library, compiled now unless a cached copy whose bytes match its sidecar digest exists.
    The library and its digest are written to temporary names and renamed into place, so concurrent workers
    building the same cell never see a half-written file."""
    source = c_source(cell)
    lib = _library_path(source)
    sidecar = lib.with_suffix(".sha256")
    try:
        if lib.is_file() and sidecar.is_file() and sidecar.read_text().strip() == _digest(lib):
            return lib
    except OSError:
        pass  # unreadable: rebuild
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent, prefix=".build-") as tmp:
            src, out = Path(tmp) / "cell.c", Path(tmp) / "cell.so"
            src.write_text(source)
            done = subprocess.run([compiler(), *FLAGS, "-o", str(out), str(src), "-lm"], capture_output=True,
                                  text=True, timeout=COMPILE_TIMEOUT_S)
            if done.returncode != 0:
                raise NativeUnavailable(f"compiling the cell's kernels failed ({compiler()} exit "
                                        f"{done.returncode}): {done.stderr.strip()[-400:]}")
            digest = _digest(out)
            (Path(tmp) / "cell.sha256").write_text(digest + "\n")
            os.replace(src, lib.with_suffix(".c"))  # kept beside the library, for reading
            os.replace(out, lib)
            os.replace(Path(tmp) / "cell.sha256", sidecar)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"building the cell's kernels failed ({type(e).__name__}: {e})") from e
    return lib


class NativeKernels:
    """A cell's compiled step functions, per dtype (see the module docstring)."""

    def __init__(self, cell: Cell, lib: ctypes.CDLL) -> None:
        self.cell, self.shared_grad = cell, all_leaves_add(cell)
        self.functions: dict[torch.dtype, tuple] = {}
        ptr, size = ctypes.c_void_p, ctypes.c_long
        for dtype, suffix in DTYPES.items():
            fwd, bwd = getattr(lib, f"cell_forward_{suffix}"), getattr(lib, f"cell_backward_{suffix}")
            fwd.argtypes, fwd.restype = [ptr] * 5 + [size] * 2, None
            bwd.argtypes, bwd.restype = [ptr] * 9 + [size] * 2, None
            self.functions[dtype] = (fwd, bwd)

    def forward_sequence(self, x_proj: torch.Tensor, w_hidden: torch.Tensor, h0: torch.Tensor, out: torch.Tensor,
                         cs: torch.Tensor, hps: torch.Tensor) -> None:
        """Every step forward, filling ``out``, ``cs`` and ``hps`` (:class:`workers.kernel_sequence.KernelSequence`).
        The loop passes raw addresses (a step's offset into each buffer), so a step costs one matrix product and
        one foreign call, not a dozen tensor views."""
        steps, batch, width = x_proj.shape
        hidden = h0.shape[1]
        forward_fn = self.functions[x_proj.dtype][0]
        size = x_proj.element_size()
        proj, state = batch * width * size, batch * hidden * size
        xp_at, hp_at, c_at, out_at = x_proj.data_ptr(), hps.data_ptr(), cs.data_ptr(), out.data_ptr()
        hp_views, out_views = hps.unbind(0), out.unbind(0)
        wt, h = w_hidden.t(), h0
        for t in range(steps):
            torch.mm(h, wt, out=hp_views[t])
            forward_fn(xp_at + t * proj, hp_at + t * proj, c_at + t * state, out_at + t * state,
                       c_at + (t + 1) * state, batch, hidden)
            h = out_views[t]

    def backward_sequence(self, b: Backward) -> None:
        """Every step backward, from the last, filling ``b``'s gradients."""
        steps, batch, width = b.x_proj.shape
        hidden = b.h0.shape[1]
        backward_fn = self.functions[b.x_proj.dtype][1]
        size = b.x_proj.element_size()
        proj, state = batch * width * size, batch * hidden * size
        gout_at, xp_at, hp_at, c_at = b.g_out.data_ptr(), b.x_proj.data_ptr(), b.hps.data_ptr(), b.cs.data_ptr()
        gxp_at, ghp_at = b.g_xp.data_ptr(), (None if self.shared_grad else b.g_hp.data_ptr())
        for t in reversed(range(steps)):
            gc_prev = b.gc_bufs[t % 2]
            backward_fn(gout_at + t * state, b.gh.data_ptr(), b.gc.data_ptr(), xp_at + t * proj, hp_at + t * proj,
                        c_at + t * state, gxp_at + t * proj, None if ghp_at is None else ghp_at + t * proj,
                        gc_prev.data_ptr(), batch, hidden)
            b.step_done(t, gc_prev)


def forget() -> None:
    """Forget every compiler lookup and loaded cell in this process (the disk cache stays): the next use of a
    cell loads it from the cache, as a new worker process would."""
    _toolchains.clear()
    _loaded.clear()


def load(cell: Cell) -> NativeKernels:
    """``cell``'s kernels, built (or found in the cache) and loaded once per process; raises NativeUnavailable
    (then at every call, without trying again)."""
    return _remembered(_loaded, cell, _load)


def _load(cell: Cell) -> NativeKernels:
    lib = build(cell)
    try:
        return NativeKernels(cell, ctypes.CDLL(str(lib)))
    except (OSError, AttributeError) as e:
        raise NativeUnavailable(f"the compiled cell {lib} does not load ({type(e).__name__}: {e})") from e


def supports(tensor: torch.Tensor) -> str:
    """Why ``tensor``'s sequence cannot run on the C kernels, or "" when it can."""
    if tensor.device.type != "cpu":
        return f"the C kernels run on CPUs, not {tensor.device.type}"
    if tensor.dtype not in DTYPES:
        return f"the C kernels exist for float32 and float64, not {str(tensor.dtype).removeprefix('torch.')}"
    return ""
