"""The ``nas`` command: a thin layer over library functions. Errors become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from search_spaces import KNOWN_CELLS, Cell, ChildSpec, random_cell


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def describe(label: str, cell: Cell) -> str:
    m = cell.memory
    mem = "no memory" if m is None else f"c_{{t-1}} injected into n{m.inject_node}, c_t from n{m.output_node}"
    header = [
        f"{label}: base {cell.base}, {2 * cell.base - 1} nodes, {mem}",
        "x_i = W_i x_t + b_i and h_i = U_i h_{t-1} are chunk i of the input and recurrent projections.",
    ]
    return "\n".join(header + ["  " + line for line in cell.formula().splitlines()])


def cmd_show(args: argparse.Namespace) -> None:
    child = None
    if args.random:
        if args.cell:
            raise UserError("give either a cell name/spec file or --random, not both")
        spec, label = ChildSpec(random_cell(args.base, args.seed)), f"random cell (seed {args.seed})"
    elif args.cell and Path(args.cell).is_dir():
        from nas.runs.results import Run

        child = Run(args.cell).child_at_rank(args.rank)
        spec, label = ChildSpec.from_json(child["spec"]), f"{args.cell} rank {args.rank} (child {child['index']})"
    else:
        if not args.cell:
            raise UserError(f"name a cell ({', '.join(KNOWN_CELLS)}), a spec JSON file or a results folder, or use "
                            "--random")
        if args.rank != 1:
            raise UserError("--rank applies to a results folder; drop it for a cell name or spec file")
        from nas.retrain.sources import EQUATIONS
        from search_spaces import load_spec

        if args.cell in EQUATIONS:
            if args.json or args.plot or args.actions:
                tree = " (its tree: `nas show lstm`)" if args.cell == "torch-lstm" else ""
                raise UserError(f"{args.cell} is torch's own layer: --json, --actions and --plot are for trees{tree}")
            print(EQUATIONS[args.cell])
            return
        label, spec = load_spec(args.cell)
    if args.json:
        print(json.dumps(spec.to_dict() if spec.hparams else spec.cell.to_dict(), indent=2))
    else:
        print(describe(label, spec.cell))
        if spec.hparams:
            print("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in spec.hparams.as_dict().items()))
        if child is not None:
            print(outcome_line(child))
        if args.actions:
            print("actions: " + " ".join(map(str, spec.cell.to_actions())))
    if args.plot:
        from nas.runs.cell_figure import draw_cell

        print(f"wrote {draw_cell(spec.cell, args.plot, title=label)}")


def outcome_line(child: Any) -> str:
    """A results row's outcome in words, e.g. ``outcome: completed, val ppl 12.34 after 200 training batches,
    104,765 parameters, 10.3 s training``."""
    import pandas as pd
    parts = [f"outcome: {child['status']}, val ppl {child['val_ppl']:.2f}"]
    fidelity = child.get("fidelity")
    if fidelity is not None and not pd.isna(fidelity) and fidelity > 0:
        parts[0] += f" after {int(fidelity)} training batches"
    for key, text in (("params", "{:,} parameters"), ("train_seconds", "{:.1f} s training"),
                      ("reused_from", "reused the outcome of child {}")):
        value = child.get(key)
        if value is not None and not pd.isna(value):
            parts.append(text.format(int(value) if key != "train_seconds" else float(value)))
    return ", ".join(parts)


def cmd_data_info(args: argparse.Namespace) -> None:
    from workers.data import load_corpus

    print(load_corpus(args.source, args.level).summary())


def cmd_data_download(args: argparse.Namespace) -> None:
    from workers.download import download

    for path in download(args.name, args.dir):
        print(path)


def cmd_search(args: argparse.Namespace) -> int:
    from nas.config import config_from_dict, load_config, load_run_config, merge_overrides
    from nas.search.driver import run_search

    overrides = _settings_given(args)
    if args.resume:
        allowed = {"results_dir", "address", "trials"}  # --trials N extends a search to N children
        given = [k for k, v in overrides.items() if v is not None and k not in allowed]
        given += ["config"] if args.config else []
        if given:
            flags = ", ".join("--" + k.split(".")[-1].replace("_", "-") for k in given)
            raise UserError(f"--resume continues {args.resume!r} with the settings it was started with; drop {flags}")
        cfg = load_run_config(args.results_dir or "results", args.resume)
        if args.address or args.trials:
            cfg = config_from_dict({**cfg.to_dict(), "address": args.address or cfg.address,
                                    "trials": args.trials or cfg.trials})
        outcome = run_search(cfg, resume=True)
    else:
        cfg = load_config(args.config, overrides) if args.config else config_from_dict(merge_overrides({}, overrides))
        outcome = run_search(cfg, resume=False)
    if outcome.interrupted:
        return 130  # stopped by Ctrl-C: resumable, but not done (shells expect 130)
    if outcome.finished == 0:
        raise UserError("no child finished; see the Ray trial folders in " + str(outcome.run_dir))
    return 0


def cmd_results(args: argparse.Namespace) -> None:
    from nas.runs.results import Run, leaderboard

    run = Run(args.dir)
    cells = run.cells
    if args.max_params is not None:
        if args.max_params < 1:
            raise UserError(f"--max-params {args.max_params}: give a whole number of parameters >= 1")
        kept = cells[(cells["params"] <= args.max_params).fillna(False)]
        print(f"{len(kept)} of {len(cells)} children have at most {args.max_params:,} parameters (ranks are over "
              "the whole search)")
        if kept.empty:
            return
        cells = kept
    if args.pareto:
        from nas.runs.pareto import front

        best = front(cells)
        print(f"Pareto front: {len(best)} of {int(cells['rank'].notna().sum())} ranked children; no other child has "
              "both fewer or as many parameters and a lower or equal val_ppl")
        if best.empty:
            return
        print(leaderboard(best, top=len(best), sort="params", level=_run_level(run.path)))
    else:
        print(leaderboard(cells, top=args.top, sort=args.sort, level=_run_level(run.path)))
    if args.plot:
        print(f"plot written to {run.plot_progress()}")


def _run_level(run_dir: Path) -> str:
    """The tokenisation a run's children trained at ("word" when its config is missing or unreadable)."""
    from nas.runs.records import CONFIG_FILE
    from workers.corpora import DataConfig, resolved_level

    try:  # the data section alone: the rest of the settings need torch to check, and a table does not
        data = DataConfig(**json.loads((run_dir / CONFIG_FILE).read_text()).get("data", {}))
    except (OSError, ValueError, TypeError, AttributeError):
        return "word"
    return resolved_level(data.source, data.level)


def cmd_compare(args: argparse.Namespace) -> None:
    from nas.runs.compare import DEFAULT_AT, comparison_table, find_run, load_curve, parse_counts, plot_curves, run_algo

    at = parse_counts(args.at) if args.at is not None else DEFAULT_AT
    dirs = [find_run(run, args.results_dir) for run in args.runs]
    algos = [run_algo(d) for d in dirs]
    labels = [f"{d.resolve().name} ({algo})" for d, algo in zip(dirs, algos)]
    curves = [load_curve(d) for d in dirs]
    if curves[0]["best_val_ppl"].isna().all():
        raise UserError(f"{dirs[0]} has no completed child, so it has no best val_ppl for the others to reach; put a "
                        "run with a completed child first")
    plot = Path(args.plot) if args.plot else None
    for flag, path in (("--plot", plot), ("--pareto", args.pareto)):
        if path and (Path(path).suffix.lower() != ".png" or not Path(path).parent.is_dir()):
            raise UserError(f"{flag} {path}: give a .png file in an existing folder")
    print(comparison_table(list(zip(labels, curves)), at))
    if args.pareto:
        from nas.runs.pareto import plot_fronts
        from nas.runs.results import Run

        runs = {(label if labels.count(label) == 1 else f"{label} {d}"): Run(d).cells for label, d in zip(labels, dirs)}
        print(f"Pareto fronts written to {plot_fronts(runs, args.pareto)}")
    if plot:
        groups: dict[str, list[Any]] = {}
        for label, algo, d, curve in zip(labels, algos, dirs, curves):
            key = algo if args.group == "algo" else label if labels.count(label) == 1 else f"{label} {d}"
            groups.setdefault(key, []).append(curve)
        print(f"plot written to {plot_curves(groups, plot)}")


def cmd_export(args: argparse.Namespace) -> None:
    from nas.runs.export import write_export
    from nas.runs.results import spec_at_rank

    if Path(args.source).is_dir():
        spec = spec_at_rank(args.source, args.rank)
    else:
        if args.rank != 1:
            raise UserError("--rank applies to a results folder; drop it for a cell name or spec file")
        from search_spaces import load_spec

        _, spec = load_spec(args.source)
    py, js = write_export(spec, args.out, class_name=args.class_name)
    print(f"wrote {py}\nwrote {js}")


def cmd_train(args: argparse.Namespace) -> int:
    from nas.retrain.sources import match_params, train_source
    from nas.retrain.trainer import retrain_recipe

    folder = _train_folder(args)
    search = _train_search_settings(args, folder)
    cfg = retrain_recipe(search, seeds=args.seeds, first_seed=args.seed, device=args.device)
    if args.top is not None:
        return _train_top(args, folder, cfg)
    jobs = [train_source(source, folder, args.rank, cfg) for source in args.source]
    if args.match_params:
        jobs = match_params(jobs, args.match_params, folder, args.rank, cfg)
    return _train_jobs(args, jobs, folder, search.results_dir)


def _train_folder(args: argparse.Namespace) -> Path | None:
    """The one results folder among ``nas train``'s sources (None when there is none), after the checks on how
    the sources and flags go together."""
    if len(set(args.source)) < len(args.source):
        raise UserError(f"sources {' '.join(args.source)}: one is given twice; name each source once")
    folders = [s for s in args.source if Path(s).is_dir()]
    if len(folders) > 1:
        raise UserError(f"{' and '.join(folders)}: give at most one results folder per call (the others' settings "
                        "would differ); train each in its own call")
    folder = Path(folders[0]) if folders else None
    if args.top is not None and (folder is None or len(args.source) > 1 or args.rank != 1 or args.match_params):
        raise UserError("--top K retrains the K best children of one results folder: give just that folder "
                        "(without --rank or --match-params)")
    if folder is None and args.rank != 1:
        raise UserError("--rank applies to a results folder; drop it for a cell name or spec file")
    return folder


def _train_search_settings(args: argparse.Namespace, folder: Path | None) -> Any:
    """The search settings a retraining starts from: the results folder's own, else --config's, else the defaults;
    the data and retraining flags override them."""
    from nas.config import CONFIG_FILE, config_from_dict, load_config, load_run_config, merge_overrides

    data = _settings_given(args)
    if folder is None:
        return load_config(args.config, data) if args.config else config_from_dict(merge_overrides({}, data))
    if args.config:
        raise UserError("--config applies to a cell name or spec file; a results folder brings the settings "
                        "its search ran with (override the data with --dataset/--data-dir/--level)")
    if not (folder / CONFIG_FILE).is_file():
        raise UserError(f"{folder} has no {CONFIG_FILE}, so its search settings are unknown; give the folder "
                        "printed at the end of a search, or export the cell and train the spec JSON with --config")
    run = folder.resolve()
    return config_from_dict(merge_overrides(load_run_config(run.parent, run.name).to_dict(), data))


def _train_jobs(args: argparse.Namespace, jobs: list, folder: Path | None, results_dir: str) -> int:
    """Train each (label, spec, settings) into its folder and print its summary; several: one comparison table."""
    from nas.retrain.sources import slug
    from nas.retrain.trainer import (
        check_out_dir,
        comparison_lines,
        default_out_dir,
        fresh_dir,
        retrain,
        seeds_summary_line,
        write_comparison,
    )

    if len(jobs) == 1:
        out = Path(args.out) if args.out else (fresh_dir(folder / f"train-rank{args.rank}") if folder
                                               else default_out_dir(results_dir, jobs[0][0]))
        dirs = [out]
    else:
        out = Path(args.out) if args.out else default_out_dir(results_dir, "compare")
        dirs = [out / slug(label) for label, _, _ in jobs]
        check_out_dir(out)  # before the first source trains
    outcomes = []
    for (label, spec, job_cfg), job_out in zip(jobs, dirs):
        outcome = retrain(spec, job_cfg, job_out, source=label)
        outcomes.append(outcome)
        print(seeds_summary_line(outcome.test_ppl_mean, outcome.test_ppl_std, list(outcome.runs), outcome.level))
        print(f"wrote {job_out / 'train.json'}")
    if len(jobs) > 1:
        for line in comparison_lines([label for label, _, _ in jobs], outcomes):
            print(line)
        print(f"wrote {write_comparison(out, [label for label, _, _ in jobs], outcomes)}")
    if not any(r["status"] == "completed" for o in outcomes for r in o.runs):
        raise UserError(f"no seed completed training; see {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from nas.retrain.sample import SampleSettings, sample_text
    from nas.retrain.trainer import check_device

    if args.num_samples < 1:
        raise UserError(f"--num-samples {args.num_samples}: use a whole number >= 1")
    if args.device:
        check_device(args.device)
    settings = SampleSettings(args.length, 0.0 if args.greedy else args.temperature, args.top_k, args.seed)
    path, level, texts = sample_text(args.model, args.prime, settings, args.num_samples, args.device)
    text = "\n\n---\n\n".join(texts)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    unit = "characters" if level == "char" else "words"
    print(f"\n({len(texts)} sample(s) of {settings.length} {unit} from {path}, temperature {settings.temperature:g}"
          f"{f', top-k {settings.top_k}' if settings.top_k else ''}, seed {settings.seed}"
          f"{f'; written to {args.out}' if args.out else ''})", file=sys.stderr)
    return 0


def _train_top(args: argparse.Namespace, folder: Path, cfg: Any) -> int:
    from nas.retrain.top import retrain_top, top_children, top_lines
    from nas.retrain.trainer import fresh_dir

    top_children(folder, args.top)  # too few children: one clear line before anything is written
    out = Path(args.out) if args.out else fresh_dir(folder / f"train-top{args.top}")
    top = retrain_top(folder, args.top, cfg, out)
    for line in top_lines(top):
        print(line)
    print(f"wrote {out / 'top.csv'} and {out / 'top.json'}")
    if top.winner is None:
        raise UserError(f"no child completed its retraining; see {out}")
    return 0


def _power_of_two(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 2 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"{v} is not a power of two >= 2 (2, 4, 8, ...)")
    return v


def _auto_or(kind: type) -> Callable[[str], Any]:
    """An argparse type: the word "auto" (passed on as is, for the config to resolve) or a number of ``kind``."""
    def parse(text: str) -> Any:
        if text == "auto":
            return text
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not auto or a {kind.__name__}") from None
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to look, exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"nas: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nas", description="Neural architecture search for recurrent cells.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_show, _add_search, _add_results, _add_compare, _add_export, _add_train, _add_sample, _add_data):
        add(sub)
    return p


def _add_show(sub: Any) -> None:
    show = sub.add_parser("show", help="print a cell's formula")
    show.add_argument("cell", nargs="?", help=f"a known cell ({', '.join(KNOWN_CELLS)}), a spec JSON file, or a "
                      "results folder (its child at --rank)")
    show.add_argument("--rank", type=int, default=1, help="which child of a results folder (default 1, the best)")
    show.add_argument("--plot", metavar="FILE.png", help="also draw the cell as a picture (leaves, nodes, memory)")
    show.add_argument("--random", action="store_true", help="show a uniformly random cell instead")
    show.add_argument("--base", type=_power_of_two, default=8, help="leaves of the random cell (default 8)")
    show.add_argument("--seed", type=int, default=0, help="seed of the random cell (default 0)")
    show.add_argument("--json", action="store_true", help="print the cell's JSON instead of its formula")
    show.add_argument("--actions", action="store_true", help="also print the controller's action list")
    show.set_defaults(func=cmd_show)


def _add_search(sub: Any) -> None:
    from nas.config import SearchConfig
    from workers.corpora import DataConfig

    search = sub.add_parser("search", help="search for a recurrent cell (with no options: the built-in default)")
    search.add_argument("--config", metavar="FILE", help="TOML file with the search settings (flags override it)")
    _add_settings(search, SearchConfig)
    _add_settings(search, DataConfig, "data")
    search.add_argument("--resume", metavar="NAME", help="continue the experiment NAME where it stopped (with "
                        "--trials N: then go on to N children)")
    search.set_defaults(func=cmd_search)


def _add_results(sub: Any) -> None:
    results = sub.add_parser("results", help="leaderboard of a search's children")
    results.add_argument("dir", help="a results folder, e.g. results/<name>")
    results.add_argument("--top", type=int, default=5, help="rows to show (default 5)")
    results.add_argument("--sort", default="val_ppl", help="column to sort by (default val_ppl)")
    results.add_argument("--plot", action="store_true", help="also (re)write progress.png")
    results.add_argument("--max-params", type=int, metavar="N", help="show only children with at most N parameters")
    results.add_argument("--pareto", action="store_true", help="list the children on the Pareto front of "
                         "validation perplexity against parameters (no other child beats them on both), smallest "
                         "first")
    results.set_defaults(func=cmd_results)


def _add_compare(sub: Any) -> None:
    compare = sub.add_parser("compare", help="best-so-far val_ppl of several searches, by children and by compute")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="results folders (results/<name>) or experiment "
                         "names under --results-dir; the first is the reference whose final best the others reach")
    compare.add_argument("--results-dir", default="results", help="folder of experiments that names are looked up "
                         "in (default ./results)")
    compare.add_argument("--at", metavar="N,N,...", help="numbers of children to show the best so far at, e.g. "
                         "10,20 (default 25,50,100,150; each run's final count is always shown)")
    compare.add_argument("--plot", metavar="FILE.png", help="also write the best-so-far curves, by children and by "
                         "compute, to this PNG")
    compare.add_argument("--pareto", metavar="FILE.png", help="also write every run's children and Pareto front "
                         "(val_ppl against parameters) to this PNG")
    compare.add_argument("--group", choices=["run", "algo"], default="run", help="plot one line per run (default), "
                         "or per algo: the mean ± std of its runs")
    compare.set_defaults(func=cmd_compare)


def _add_export(sub: Any) -> None:
    export = sub.add_parser("export", help="write a cell as a standalone PyTorch module")
    export.add_argument("source", help="a results folder, a spec JSON file, or a known cell name")
    export.add_argument("--out", required=True, help="the .py file to write (its spec JSON goes next to it)")
    export.add_argument("--rank", type=int, default=1, help="which child of a results folder (default 1, the best)")
    export.add_argument("--class-name", default="SearchedCell", help="name of the cell class (default SearchedCell)")
    export.set_defaults(func=cmd_export)


def _add_train(sub: Any) -> None:
    from nas.config import RetrainSettings
    from workers.corpora import DataConfig

    train = sub.add_parser("train", help="retrain a cell to convergence and report its test perplexity")
    train.add_argument("source", nargs="+", help="what to train: a results folder (its best child, or --rank K), a "
                       "spec JSON file, a known cell name, or torch-lstm / torch-gru (torch.nn.LSTM / nn.GRU, the "
                       "references); several "
                       "train one after another under the same settings and are compared in one table")
    train.add_argument("--rank", type=int, default=1, help="which child of a results folder (default 1, the best)")
    train.add_argument("--top", type=int, metavar="K", help="retrain the K best children of a results folder, "
                       "report Kendall's tau between the search's order and the retrained one, pick the winner by "
                       "retrained validation perplexity and export it")
    train.add_argument("--config", metavar="FILE", help="search TOML whose [data], [model] and [train] apply (for a "
                       "spec or name; a results folder uses its own)")
    train.add_argument("--match-params", metavar="SOURCE", help="size torch-lstm's / torch-gru's hidden layer "
                       "so its parameter count matches SOURCE's model (a cell name, spec file or the results folder)")
    _add_settings(train, RetrainSettings, "retrain", note="the config's [retrain], ")
    train.add_argument("--seeds", type=int, default=1, help="independent trainings, seeds --seed, --seed+1, ... "
                       "(default 1); reports mean ± std")
    train.add_argument("--seed", type=int, help="first seed (default: the search's seed, else 0)")
    _add_settings(train, DataConfig, "data")
    train.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present, else cpu)")
    train.add_argument("--out", help="folder to write (default: <results folder>/train-rank<K> or train-top<K>, "
                       "else results/train-<cell>-<date>-<time>; with several sources, one sub-folder each)")
    train.set_defaults(func=cmd_train)


def _add_sample(sub: Any) -> None:
    sample = sub.add_parser("sample", help="generate text from a model `nas train` saved")
    sample.add_argument("model", help="a model-seed<S>.pt checkpoint, or a `nas train` folder (its best seed; a "
                        "--top folder: its winner)")
    sample.add_argument("--prime", help="text the state is run over first (default: a newline, or <eos> at word "
                        "level); printed before the sample")
    sample.add_argument("--length", type=int, default=500, help="characters or words to generate (default 500)")
    sample.add_argument("--temperature", type=float, default=0.8, help="divide the logits by this: lower is more "
                        "conservative (default 0.8; 0 = greedy)")
    sample.add_argument("--greedy", action="store_true", help="always the most likely token (temperature 0)")
    sample.add_argument("--top-k", type=int, help="draw only from the K most likely tokens (default: all)")
    sample.add_argument("--seed", type=int, default=0, help="random seed of the draws (default 0)")
    sample.add_argument("--num-samples", type=int, default=1, help="independent samples (default 1)")
    sample.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present, else cpu)")
    sample.add_argument("--out", help="also write the samples to this file")
    sample.set_defaults(func=cmd_sample)


def _add_data(sub: Any) -> None:
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


def _add_settings(parser: argparse.ArgumentParser, cls: type, section: str = "", note: str = "") -> None:
    """A flag for each setting of ``cls`` declared with ``flag=True`` (:mod:`workers.setting`): ``--name-with-dashes``,
    its type and choices from the declaration, its help from the field's docstring and default (``note`` goes in
    front of the default, e.g. "the config's [retrain], "); the value lands under the setting's dotted key
    (``data.dataset``; None when the flag is not given), ready for :func:`nas.config.merge_overrides`."""
    import dataclasses

    from workers import setting

    for name in setting.flags(cls):
        f, kind = setting.fields(cls)[name], setting.kind(cls, name)
        meta = f.metadata
        kw: dict[str, Any] = {"dest": f"{section}.{name}" if section else name, "default": None}
        if meta["choices"] is not None:
            kw["choices"] = list(meta["choices"])
        else:
            kw["metavar"] = name.upper() if kind is not None else "A,B,..."
            if kind in (int, float):
                kw["type"] = _auto_or(kind) if meta["none"] == "auto" else kind
        help_text = setting.summary(cls, name)
        if f.default is not dataclasses.MISSING:
            shown = meta["none"] if f.default is None else ",".join(f.default) or "none" if kind is None else f.default
            help_text += f" (default: {note}{shown})"
        parser.add_argument("--" + name.replace("_", "-"), help=help_text.replace("%", "%%"), **kw)
    keys = [f"{section}.{name}" if section else name for name in setting.flags(cls)]
    parser.set_defaults(setting_keys=(parser.get_default("setting_keys") or []) + keys)


def _settings_given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, by dotted key (``{"trials": 8, "data.level": "char"}``; None: not given)."""
    return {key: getattr(args, key) for key in args.setting_keys}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed as one line
        return int(e.code or 0)
    try:
        code = args.func(args)
    except (UserError, ValueError, OSError) as e:
        print(f"nas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
