#!/usr/bin/env python
"""Run the σ* sweep of ``sigma_star.toml`` (or another config) and locate σ*.

    python sweeps/sigma_star.py --out results/sigma-star [--set steps=2048] [--chunk-size N]
    python sweeps/sigma_star.py --resume results/sigma-star

A thin shell over ``dynsim sweep`` (:mod:`dynsim.cli`): parses arguments, runs the config, and leaves
``config.toml`` / ``config.json`` beside ``results.zarr`` and ``locate.csv`` in ``--out``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(HERE / "sigma_star.toml"), help="sweep config (TOML)")
    p.add_argument("--out", help="result directory")
    p.add_argument("--resume", metavar="DIR", help="resume the sweep stored in DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry")
    p.add_argument("--chunk-size", type=int, default=None, help="points per chunk")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)

    from dynsim import cli

    argv = ["sweep", *(["--resume", args.resume] if args.resume else [args.config])]
    argv += ["--out", args.out] if args.out and not args.resume else []
    for item in args.set:
        argv += ["--set", item]
    if args.chunk_size is not None:
        argv += ["--chunk-size", str(args.chunk_size)]
    if args.no_progress:
        argv.append("--no-progress")
    return cli.main(argv)

if __name__ == "__main__":
    sys.exit(main())
