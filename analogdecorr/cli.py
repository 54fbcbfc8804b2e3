"""Command line: ``analogdecorr train | plot | presets | hdl ...``. Thin: parses, calls the library, prints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .errors import AnalogDecorrError

# Flags that take a table (device/io): JSON on the command line, a TOML table in a config file.
_TABLE_FIELDS = ("device", "io")


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .config import FIELD_HELP, RunConfig  # imports torch (through the dataset list): only for `train`

    p = sub.add_parser(
        "train",
        help=_TRAIN_HELP,
        description="Train one run. Flags override values from --config, which override the --recipe's, which "
        "override the defaults.",
    )
    p.add_argument("--config", type=Path, help="TOML run configuration (keys as the flags, with underscores)")
    p.add_argument("--recipe", metavar="NAME",
                   help="start from a named recipe (analogdecorr recipes lists them) or a recipe .toml; "
                   "--config and flags override it")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in logs)")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots at the end")
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        help_ = FIELD_HELP.get(f.name, "")
        if f.type in (bool, "bool"):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.name in _TABLE_FIELDS:
            p.add_argument(flag, dest=f.name, default=None, metavar="JSON", help=help_ + " (a JSON object)")
        else:
            p.add_argument(flag, dest=f.name, default=None, help=help_)


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import RunConfig, load_toml, resolve
    from .errors import ConfigError
    from .train import train

    file_values = load_toml(args.config) if args.config else {}
    if args.recipe:  # the recipe is the lowest file layer: --config's keys win, device/io merge key by key
        from .recipes import layer, load_recipe

        file_values = layer(load_recipe(args.recipe), file_values)
    overrides = {}
    for f in dataclasses.fields(RunConfig):
        v = getattr(args, f.name, None)
        if v is None:
            continue
        if f.name in _TABLE_FIELDS:
            try:
                v = json.loads(v)
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"--{f.name} must be a JSON object such as '{{\"out_noise\": 0.0}}': {e}"
                ) from None
        overrides[f.name] = v
    cfg = resolve(file_values, overrides)
    results = train(cfg, resume=args.resume, progress=not args.no_progress)
    out = Path(cfg.out)
    print(f"results: {out / 'results.json'}")
    if not args.no_plots:
        from .plots import plot_results

        for path in plot_results(out / "results.json", out):
            print(f"plot: {path}")
    last = results["epochs"][-1] if results["epochs"] else None
    if last:
        print(f"final test accuracy {last['test_acc']:.4f} after {last['epoch']} epochs")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_comparison, plot_results

    paths = [p / "results.json" if p.is_dir() else p for p in args.results]
    if len(paths) == 1:
        out = args.out or paths[0].parent
        for path in plot_results(paths[0], out):
            print(f"plot: {path}")
    else:
        out = args.out or Path(".")
        target = Path(out) / "comparison.png"
        plot_comparison(paths, target)
        print(f"plot: {target}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from .backends.analog import list_presets

    presets = list_presets()
    width = max(len(n) for n, _ in presets)
    for name, desc in presets:
        print(f"{name:<{width}}  {desc}")
    return 0


def _add_recipes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the named recipes (tuned settings run by `train --recipe NAME`), one line each",
        description="List the packaged recipes, show one, or write a tuned sweep's chosen settings as recipes.",
    )
    p.add_argument("--show", metavar="NAME", help="print the recipe NAME (its comments say who chose it and how)")
    p.add_argument("--write", metavar="SWEEP", type=Path,
                   help="a tuned sweep's folder (or its chosen.toml): write one recipe per chosen row into --into")
    p.add_argument("--into", type=Path, help="folder for --write's recipes (e.g. analogdecorr/recipes)")
    p.add_argument("--prefix", help="--write: recipe names start with this (default: the sweep's name)")
    p.set_defaults(func=_cmd_recipes)


def _cmd_recipes(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .recipes import builtin_recipes, describe, resolve_recipe, write_recipes

    if args.write is not None:
        if args.into is None:
            raise ConfigError("recipes --write needs --into DIR, the folder for the recipe files (the packaged "
                              "ones live in analogdecorr/recipes)")
        command = f"analogdecorr recipes --write {args.write} --into {args.into}" + (
            f" --prefix {args.prefix}" if args.prefix else "")
        for path in write_recipes(args.write, args.into, args.prefix, command):
            print(f"recipe: {path}  {describe(path)}")
        return 0
    if args.show:
        print(resolve_recipe(args.show).read_text(encoding="utf-8"), end="")
        return 0
    recipes = builtin_recipes()
    width = max((len(n) for n in recipes), default=0)
    for name, path in recipes.items():
        print(f"{name:<{width}}  {describe(path)}")
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep file's grid of runs on Ray (resumes), write summary.md/.csv/.png",
        description="Run every run of a sweep file (TOML: [sweep] seeds/metric/select, [base], [grid], [sample], "
        "[[exclude]], [tune]; see analogdecorr/sweep/spec.py) on a local Ray cluster or the one at --address. "
        "Finished runs are skipped, interrupted ones resume from their checkpoint. With [tune], each row is "
        "searched on validation first, then runs its final seeds at its choice (summary.md names it; "
        "chosen.toml feeds `analogdecorr recipes --write`).",
    )
    p.add_argument("sweep_file", nargs="?", metavar="SWEEP",
                   help="a sweep file (path to a .toml) or the name of a built-in one (see --list)")
    p.add_argument("--list", action="store_true", help="list the built-in sweeps, one line each, and exit")
    p.add_argument("--address", help="join the Ray cluster at this address (host:port, ray://host:port or auto)")
    p.add_argument("--jobs", type=int, help="runs at a time (default: every CPU of the cluster)")
    p.add_argument("--out", type=Path, help="sweep folder (default: [sweep] out, else runs/sweeps/<file stem>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .sweep import load_sweep, run_sweep
    from .sweep.builtin import builtin_sweeps, describe, resolve_sweep

    if args.list:
        sweeps = builtin_sweeps()
        width = max((len(n) for n in sweeps), default=0)
        for name, path in sweeps.items():
            print(f"{name:<{width}}  {describe(path)}")
        return 0
    if args.sweep_file is None:
        raise ConfigError("analogdecorr sweep needs a sweep file or a built-in sweep's name, e.g. "
                          "analogdecorr sweep demo (analogdecorr sweep --list shows them)")
    path = resolve_sweep(args.sweep_file)
    spec = load_sweep(path)
    out = args.out or Path(spec.out or Path("runs") / "sweeps" / path.stem)
    trials, report = run_sweep(spec, out, address=args.address, jobs=args.jobs, progress=not args.no_progress)
    print(f"{len(trials)} runs: {report.count(how='before')} finished before, {report.count(how='new')} new, "
          f"{report.count(how='resumed')} resumed; {report.count(status='diverged')} diverged, "
          f"{len(report.failed)} failed")
    for o in report.failed:
        print(f"failed: {o.trial.label} ({o.trial.out}): {o.error.splitlines()[0]}", file=sys.stderr)
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"summary: {out / 'summary.md'}, {out / 'summary.csv'}, {out / 'summary.png'}")
    return 1 if report.failed else 0


# Commands whose parsers import heavy libraries (train: torch, through the configuration's dataset list; hdl:
# amaranth) are built only when argv names them; otherwise a stub with the same one-line help keeps them on the
# top-level help. _HDL_HELP repeats hdl.commands.register's help (tests/test_imports.py checks they agree).
_TRAIN_HELP = "train one run (defaults: digits, node perturbation + scaled decorrelation, 4×1000 MLP)"
_HDL_HELP = "fixed-point decorrelation unit: export Verilog, verify, synthesize"


def _command(argv: list[str] | None) -> str | None:
    """The subcommand word of argv (the first non-option argument), or None."""
    args = sys.argv[1:] if argv is None else argv
    return next((a for a in args if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for argv's command: ``train`` and ``hdl`` are stubs (their one-line help) unless argv names
    them, so ``analogdecorr hdl ...`` never imports torch and ``analogdecorr train ...`` never imports amaranth."""
    command = _command(argv)
    parser = argparse.ArgumentParser(
        prog="analogdecorr",
        description="Decorrelated learning on simulated analog crossbars, and a fixed-point decorrelation unit "
        "for FPGAs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    if command == "train":
        _add_train(sub)
    else:
        sub.add_parser("train", help=_TRAIN_HELP)
    p = sub.add_parser("plot", help="PNG learning curves and correlation images from results.json")
    p.add_argument("results", nargs="+", type=Path, help="run folder(s) or results.json file(s)")
    p.add_argument("--out", type=Path, help="folder for the PNGs (default: beside the results)")
    sub.add_parser("presets", help="list the analog device presets, one line each")
    _add_recipes(sub)
    _add_sweep(sub)
    if command == "hdl":
        from .hdl.commands import register

        register(sub)
    else:
        sub.add_parser("hdl", help=_HDL_HELP)
    from .cosim.commands import register as register_cosim

    register_cosim(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "plot":
            return _cmd_plot(args)
        if args.command == "presets":
            return _cmd_presets(args)
        return int(args.func(args) or 0)
    except AnalogDecorrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch's checkpoint and results are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
