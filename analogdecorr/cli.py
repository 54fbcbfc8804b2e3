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
    from .config import FIELD_HELP, RunConfig

    p = sub.add_parser(
        "train",
        help="train one run (defaults: digits, node perturbation + scaled decorrelation, 4×1000 MLP)",
        description="Train one run. Flags override values from --config, which override the defaults.",
    )
    p.add_argument("--config", type=Path, help="TOML run configuration (keys as the flags, with underscores)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analogdecorr",
        description="Decorrelated learning on simulated analog crossbars, and a fixed-point decorrelation unit "
        "for FPGAs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    p = sub.add_parser("plot", help="PNG learning curves and correlation images from results.json")
    p.add_argument("results", nargs="+", type=Path, help="run folder(s) or results.json file(s)")
    p.add_argument("--out", type=Path, help="folder for the PNGs (default: beside the results)")
    sub.add_parser("presets", help="list the analog device presets, one line each")
    from .hdl.commands import register

    register(sub)
    from .cosim.commands import register as register_cosim

    register_cosim(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
