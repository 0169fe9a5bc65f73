"""The ``nas`` command: a thin layer over library functions. Errors become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from search_spaces import KNOWN_CELLS, Cell, ChildSpec, known_cell, random_cell


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def load_spec(source: str) -> tuple[str, ChildSpec]:
    """A known cell name, or a JSON file holding a cell or a spec; returns (label, spec)."""
    if source in KNOWN_CELLS:
        return source, ChildSpec(known_cell(source))
    path = Path(source)
    if not path.exists():
        raise UserError(
            f"{source!r} is neither a known cell ({', '.join(KNOWN_CELLS)}) nor an existing spec JSON file"
        )
    try:
        return path.name, ChildSpec.from_json(path.read_text())
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: {e}") from None


def describe(label: str, cell: Cell) -> str:
    m = cell.memory
    mem = "no memory" if m is None else f"c_{{t-1}} injected into n{m.inject_node}, c_t from n{m.output_node}"
    header = [
        f"{label}: base {cell.base}, {2 * cell.base - 1} nodes, {mem}",
        "x_i = W_i x_t + b_i and h_i = U_i h_{t-1} are chunk i of the input and recurrent projections.",
    ]
    return "\n".join(header + ["  " + line for line in cell.formula().splitlines()])


def cmd_show(args: argparse.Namespace) -> None:
    if args.random:
        if args.cell:
            raise UserError("give either a cell name/spec file or --random, not both")
        spec, label = ChildSpec(random_cell(args.base, args.seed)), f"random cell (seed {args.seed})"
    else:
        if not args.cell:
            raise UserError(f"name a cell ({', '.join(KNOWN_CELLS)}) or a spec JSON file, or use --random")
        label, spec = load_spec(args.cell)
    if args.json:
        print(json.dumps(spec.to_dict() if spec.hparams else spec.cell.to_dict(), indent=2))
        return
    print(describe(label, spec.cell))
    if spec.hparams:
        print("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in spec.hparams.as_dict().items()))
    if args.actions:
        print("actions: " + " ".join(map(str, spec.cell.to_actions())))


def cmd_data_info(args: argparse.Namespace) -> None:
    from workers.data import load_corpus

    print(load_corpus(args.source, args.level).summary())


def cmd_data_download(args: argparse.Namespace) -> None:
    from workers.download import download

    for path in download(args.name, args.dir):
        print(path)


def _power_of_two(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 2 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"{v} is not a power of two >= 2 (2, 4, 8, ...)")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas", description="Neural architecture search for recurrent cells.")
    sub = p.add_subparsers(dest="command", required=True)

    show = sub.add_parser("show", help="print a cell's formula")
    show.add_argument("cell", nargs="?", help=f"a known cell ({', '.join(KNOWN_CELLS)}) or a spec JSON file")
    show.add_argument("--random", action="store_true", help="show a uniformly random cell instead")
    show.add_argument("--base", type=_power_of_two, default=8, help="leaves of the random cell (default 8)")
    show.add_argument("--seed", type=int, default=0, help="seed of the random cell (default 0)")
    show.add_argument("--json", action="store_true", help="print the cell's JSON instead of its formula")
    show.add_argument("--actions", action="store_true", help="also print the controller's action list")
    show.set_defaults(func=cmd_show)

    data = sub.add_parser("data", help="inspect or download corpora")
    dsub = data.add_subparsers(dest="data_command", required=True)
    info = dsub.add_parser("info", help="vocabulary and split sizes of a corpus")
    info.add_argument("source", nargs="?", default="shakespeare", help="a bundled corpus name or a directory")
    info.add_argument("--level", choices=["auto", "word", "char"], default="auto")
    info.set_defaults(func=cmd_data_info)
    dl = dsub.add_parser("download", help="fetch PTB or WikiText-2 and verify its SHA-256 sums")
    dl.add_argument("name", help="ptb or wikitext-2")
    dl.add_argument("dir", help="directory to write the three split files into")
    dl.set_defaults(func=cmd_data_download)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UserError, ValueError, OSError) as e:
        print(f"nas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
