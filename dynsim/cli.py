"""``dynsim`` command line: ``sweep``, ``bench``, ``figure``, ``data``.

Every subcommand is a thin shell over the library; heavy imports happen inside
the handlers so ``dynsim --help`` is instant. Bad input exits with status 2 and one
line naming the offending argument; nothing is overwritten.
"""
from __future__ import annotations

import argparse
import sys


class UsageError(ValueError):
    """A bad argument; printed as one line, exit status 2."""


def _cmd_figure(args: argparse.Namespace) -> int:
    from dynsim import figures

    if args.list or not args.names:
        for fig in figures.available().values():
            print(f"{fig.name:22s} {fig.description}")
        return 0
    names = list(figures.available()) if args.names == ["all"] else args.names
    for name in names:
        out = figures.run(name, args.out if len(names) == 1 else None, quick=args.quick)
        kept = f" (previous contents kept in {figures.last_previous})" if figures.last_previous else ""
        print(f"{name}: wrote {out}{kept}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dynsim import engine as sweep_mod

    return sweep_mod.cli(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from dynsim import bench

    return bench.cli(args)


def _cmd_data(args: argparse.Namespace) -> int:
    from dynsim import data

    return data.cli(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynsim", description=__doc__.splitlines()[0])
    p.add_argument("--x64", action="store_true", help="run in float64 (default float32)")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("figure", help="regenerate a paper figure or table by name")
    f.add_argument("names", nargs="*", help="figure names, or 'all'; none lists them")
    f.add_argument("--out", default=None, help="output folder (default results/NAME)")
    f.add_argument("--quick", action="store_true", help="reduced run for smoke tests")
    f.add_argument("--list", action="store_true", help="list available figures")
    f.set_defaults(func=_cmd_figure)

    s = sub.add_parser("sweep", help="run a hyperparameter sweep from a TOML config")
    s.add_argument("config", nargs="?", help="sweep config (TOML); omit with --resume")
    s.add_argument("--out", help="result directory (zarr store + config)")
    s.add_argument("--resume", metavar="DIR", help="resume the sweep stored in DIR")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set steps=4096 (repeatable)")
    s.add_argument("--chunk-size", type=int, default=None, help="points per chunk")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.set_defaults(func=_cmd_sweep)

    b = sub.add_parser("bench", help="throughput against a same-process reference")
    b.add_argument("--train", action="store_true", help="benchmark vmapped training")
    b.add_argument("--points", type=int, default=None, help="grid points")
    b.add_argument("--steps", type=int, default=None, help="steps per point")
    b.add_argument("--repeats", type=int, default=5, help="timed repeats (median quoted)")
    b.add_argument("--out", default=None, help="also write the result JSON here")
    b.set_defaults(func=_cmd_bench)

    d = sub.add_parser("data", help="fetch or check datasets")
    d.add_argument("action", choices=["get", "check", "path"])
    d.add_argument("name", help="dataset: mnist, fashion_mnist, cifar10")
    d.add_argument("--data-dir", default=None, help="folder holding the dataset files (default $DYNSIM_DATA_DIR/NAME or ~/.cache/dynsim/NAME)")
    d.set_defaults(func=_cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"dynsim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dynsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
