"""``dynsim`` command line: ``sweep``, ``bench``, ``figure``, ``data``.

Every subcommand is a thin shell over the library; heavy imports happen inside
the handlers so ``dynsim --help`` is instant. Bad input exits with status 2 and one
line naming the offending argument; nothing is overwritten.
"""
from __future__ import annotations

import argparse
import math
import os
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


def _add_import_paths(paths) -> None:
    for p in reversed(list(paths)):
        if p not in sys.path:
            sys.path.insert(0, p)


def _run_config(cfg, out, **kw):
    """A landscape sweep config, or a training one (a ``[problem]`` table): ``(dataset, located)``."""
    if "problem" in cfg:
        from dynsim import training

        return training.run_config(cfg, out, **kw), None
    from dynsim.engine import config

    return config.run_config(cfg, out, **kw)


def _cmd_sweep(args: argparse.Namespace) -> int:
    """``dynsim sweep CONFIG.toml --out DIR [--set k=v] [--chunk-size N]`` or ``dynsim sweep --resume DIR``."""
    import pathlib
    import shlex

    from dynsim.engine import platform

    platform.configure_xla_cpu()  # before JAX starts: every core a device
    from dynsim.engine import config, store

    progress = not args.no_progress
    if args.resume:
        if args.config:
            raise UsageError("give either CONFIG or --resume DIR, not both")
        if args.set:
            raise UsageError("--set cannot change a sweep being resumed")
        out = pathlib.Path(args.resume)
        if not (out / store.CONFIG).exists():
            store.prepare(out, {}, {}, resume_only=True)  # raises, saying what is there
        stored = store.read_config(out)
        if args.chunk_size is not None and args.chunk_size != stored["sweep"].get("chunk_size"):
            raise UsageError(f"--chunk-size {args.chunk_size}: the stored sweep uses chunk_size="
                             f"{stored['sweep'].get('chunk_size')} (fixed when it was started)")
        cfg = stored.get("source") or config.config_from_stored(stored)
        _add_import_paths([os.getcwd(), *cfg.get("import_paths", [])])
        ds, located = _run_config(cfg, out, chunk_size=stored["sweep"].get("chunk_size"), progress=progress,
                                  resume_only=True)
    else:
        if not args.config:
            raise UsageError("give a CONFIG.toml (or --resume DIR)")
        if not args.out:
            raise UsageError("--out DIR is required")
        cfg, text = config.load_config(args.config, args.set)
        # user code named by import path may live beside the config (or in the working directory)
        cfg["import_paths"] = [str(pathlib.Path(args.config).resolve().parent), *cfg.get("import_paths", [])]
        _add_import_paths([os.getcwd(), *cfg["import_paths"]])
        out = pathlib.Path(args.out)
        started = ["dynsim", "sweep", str(args.config), "--out", str(out)]
        for item in args.set:
            started += ["--set", item]
        if args.chunk_size is not None:
            started += ["--chunk-size", str(args.chunk_size)]
        text = f"# started as: {shlex.join(started)}\n{text}"
        ds, located = _run_config(cfg, out, chunk_size=args.chunk_size, progress=progress, source_text=text)
    state = "complete" if ds.attrs.get("complete", True) else "INCOMPLETE"
    if "problem" in cfg:
        n = math.prod(ds.sizes[d] for d in ds.diverged.dims)
        print(f"train: {n:,} models ({ds.attrs['model']}, {ds.attrs['optimizer']}), {state} -> {out}")
    else:
        n = math.prod(ds.sizes[d] for d in ds.dims)
        print(f"sweep: {n:,} points x {ds.attrs['steps']} steps, {state} -> {out}")
    if located is not None:
        print(f"locate: {next(iter(located.data_vars.values())).size} points -> {out / 'locate.csv'}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """``dynsim bench [--points N] [--steps S] [--repeats R] [--out FILE] [--train]``."""
    import json

    from dynsim.engine import platform

    platform.configure_xla_cpu()  # before JAX starts: every core a device
    if args.train:
        from dynsim import training

        kw = {k: v for k, v in (("n_models", args.points), ("steps", args.steps), ("repeats", args.repeats))
              if v is not None}
        result = training.benchmark(**kw)
        print(json.dumps(result, indent=1, default=str))
    else:
        from dynsim import bench

        result = bench.run(points=args.points if args.points is not None else 1 << 18,
                           steps=args.steps if args.steps is not None else 4096,
                           repeats=args.repeats if args.repeats is not None else 5)
    from dynsim import bench

    bench.write(args.out, result)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from dynsim import data

    return data.command(args.action, args.name, data_dir=args.data_dir, backend=args.backend)


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
    d.add_argument("--data-dir", default=None, help="folder holding the dataset files (default $DYNSIM_DATA_DIR/NAME or "
                   "~/.cache/dynsim/NAME; with --backend tfds the tensorflow_datasets folder)")
    d.add_argument("--backend", choices=["files", "tfds"], default="files",
                   help="files (default), or tfds: build/read a tensorflow_datasets folder offline")
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
