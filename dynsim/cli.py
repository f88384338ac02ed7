"""``dynsim`` command line: ``sweep``, ``bench``, ``figure``, ``view``, ``data``.

Every subcommand is a thin shell over the library; heavy imports happen inside
the handlers so ``dynsim --help`` is instant. Bad input exits with status 2 and one
line naming the offending argument; nothing is overwritten.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys


class UsageError(ValueError):
    """A bad argument; printed as one line, exit status 2."""


def _cmd_figure(args: argparse.Namespace) -> int:
    from dynsim.engine import platform

    platform.restore_jax_defaults()  # the stored figures were computed with JAX's own XLA:CPU flags
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
        from dynsim.training import config as training_config

        return training_config.run_config(cfg, out, **kw), None
    from dynsim.engine import config

    return config.run_config(cfg, out, **kw)


_SWEEP_OUT: dict = {}  # the directory the running sweep writes (for the interrupt message)


def _on_signal(signum, frame) -> None:
    """SIGINT/SIGTERM during a sweep: one line and exit 128+signum, never a traceback.

    A chunk being written is finished first (:func:`dynsim.engine.store.critical`). The
    process then ends with ``os._exit``: unwinding Python through running XLA threads is
    what crashed (segfault) or printed a traceback before.
    """
    store = sys.modules.get("dynsim.engine.store")
    if store is not None and store.in_critical():
        store.defer(signum)
        return
    out = _SWEEP_OUT.get("out")
    if out is None:
        line = "interrupted before anything was written; nothing to resume"
    else:
        import shlex

        live = store.live() if store is not None else {}
        resume = f"resume with: dynsim sweep --resume {shlex.quote(str(out))}"
        if store is not None and live.get("out") is not None and str(live["out"]) == str(out):
            n = live["n_chunks"]
            line = f"interrupted: {store.count_done(live['out'], n)} of {n} chunks stored; {resume}"
        elif (out / "config.toml").exists() or (out / "config.json").exists():
            line = f"interrupted: 0 chunks stored; {resume}"
        else:
            line = "interrupted before anything was written; nothing to resume"
    try:
        sys.stdout.flush()
    except Exception:  # a signal inside a print: the buffer is busy
        pass
    try:
        lead = "\n" if _SWEEP_OUT.get("bar") and sys.stderr.isatty() else ""
        os.write(2, f"{lead}dynsim sweep: {line}\n".encode())
    finally:
        os._exit(128 + signum)


class _StderrLines(logging.Handler):
    """Log records as plain lines on the current ``sys.stderr``."""

    def emit(self, record) -> None:
        print(record.getMessage(), file=sys.stderr, flush=True)


def _catch_signals() -> None:
    """Install :func:`_on_signal` (main thread only); :func:`main` restores the previous handlers."""
    import signal
    import threading

    _SWEEP_OUT.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    _SWEEP_OUT["previous"] = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def _started(args, out) -> tuple[list[str], str]:
    """The starting command (as typed) and the header stored above the config's text."""
    import json
    import pathlib
    import shlex

    started = ["dynsim", "sweep", str(args.config), "--out", str(out)]
    for item in args.set:
        started += ["--set", item]
    if args.chunk_size is not None:
        started += ["--chunk-size", str(args.chunk_size)]
    where = json.dumps({"cwd": os.getcwd(), "config": str(pathlib.Path(args.config).resolve())})
    return started, f"# started as: {shlex.join(started)}\n# started in: {where}\n"


def _restart_from_source(out):
    """A sweep stopped before its store existed: the config and overrides stored in DIR/config.toml."""
    import json
    import pathlib
    import shlex

    import tomllib

    from dynsim.engine import config, store

    text = (out / store.SOURCE).read_text()
    lines = text.split("\n")
    if not lines[0].startswith("# started as: "):
        return None
    argv = shlex.split(lines[0][len("# started as: "):])[1:]
    try:
        first = build_parser().parse_args(argv)
    except SystemExit:
        return None
    where = {}
    if len(lines) > 1 and lines[1].startswith("# started in: "):
        try:
            where = json.loads(lines[1][len("# started in: "):])
        except json.JSONDecodeError:
            where = {}
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--resume {out}: {store.SOURCE} is not valid TOML ({e})") from None
    for item in first.set:
        config.apply_set(cfg, item)
    folder = str(pathlib.Path(where["config"]).parent) if "config" in where else None
    cfg["import_paths"] = [*([folder] if folder else []), *cfg.get("import_paths", [])]
    return cfg, text, first.chunk_size, where.get("cwd")


def _cmd_sweep(args: argparse.Namespace) -> int:
    """``dynsim sweep CONFIG.toml --out DIR [--set k=v] [--chunk-size N] [--dry-run]`` or ``--resume DIR``.

    The directory is locked and the config with its starting command written to it
    before anything is compiled, so ``--resume DIR`` completes a run stopped at any moment.
    """
    import pathlib

    _catch_signals()
    created = False
    if not args.resume and args.config and args.out and not args.dry_run:
        created = _write_early(args)
    from dynsim.engine import platform

    platform.configure_xla_cpu()  # before JAX starts: every core a device
    from dynsim.engine import config, store

    progress = not args.no_progress
    _SWEEP_OUT["bar"] = progress
    if not progress:  # no bar: the engine logs a line with the ETA per batch of chunks instead
        log = logging.getLogger("dynsim")
        if not any(isinstance(h, _StderrLines) for h in log.handlers):
            log.addHandler(_StderrLines())
        log.setLevel(logging.INFO)
    if args.resume:
        if args.config:
            raise UsageError("give either CONFIG or --resume DIR, not both")
        if args.set:
            raise UsageError("--set cannot change a sweep being resumed")
        if args.dry_run:
            raise UsageError("--dry-run plans a new sweep; give CONFIG.toml --out DIR")
        out = pathlib.Path(args.resume)
        _SWEEP_OUT.update(out=out)
        with store.writing(out) if out.is_dir() else _nothing():
            restart = None
            if not (out / store.CONFIG).exists() and (out / store.SOURCE).exists():
                restart = _restart_from_source(out)
            if restart is not None:  # stopped before its store existed: start it again, as it was started
                cfg, text, chunk_size, cwd = restart
                if args.chunk_size is not None and args.chunk_size != chunk_size:
                    raise UsageError(f"--chunk-size {args.chunk_size}: the sweep was started with "
                                     f"--chunk-size {chunk_size}")
                _add_import_paths([*([cwd] if cwd else []), os.getcwd(), *cfg["import_paths"]])
                ds, located = _run_config(cfg, out, chunk_size=chunk_size, progress=progress, source_text=text)
            else:
                if not (out / store.CONFIG).exists():
                    store.prepare(out, {}, {}, resume_only=True)  # raises, saying what is there
                stored = store.read_config(out)
                if args.chunk_size is not None and args.chunk_size != stored["sweep"].get("chunk_size"):
                    raise UsageError(f"--chunk-size {args.chunk_size}: the stored sweep uses chunk_size="
                                     f"{stored['sweep'].get('chunk_size')} (fixed when it was started)")
                cfg = stored.get("source") or config.config_from_stored(stored)
                _add_import_paths([os.getcwd(), *cfg.get("import_paths", [])])
                ds, located = _run_config(cfg, out, chunk_size=stored["sweep"].get("chunk_size"),
                                          progress=progress, resume_only=True)
    else:
        if not args.config:
            raise UsageError("give a CONFIG.toml (or --resume DIR)")
        if not args.out and not args.dry_run:
            raise UsageError("--out DIR is required")
        try:
            cfg, text = config.load_config(args.config, args.set)
        except ValueError:
            if created:  # a config that does not parse leaves nothing behind
                _forget(pathlib.Path(args.out), False)
            raise
        # user code named by import path may live beside the config (or in the working directory)
        cfg["import_paths"] = [str(pathlib.Path(args.config).resolve().parent), *cfg.get("import_paths", [])]
        _add_import_paths([os.getcwd(), *cfg["import_paths"]])
        if args.dry_run:
            return _dry_run(cfg, args)
        out = pathlib.Path(args.out)
        started, header = _started(args, out)
        text = header + text
        _SWEEP_OUT.update(out=out)
        with store.writing(out):
            wrote = created
            if not (out / store.CONFIG).exists():  # the config first: a stop from here on is resumable
                store.write_source(out, text)
                wrote = True
            try:
                ds, located = _run_config(cfg, out, chunk_size=args.chunk_size, progress=progress,
                                          source_text=text)
            except (ValueError, FileNotFoundError, FileExistsError):
                # bad input, found while planning: leave no directory behind that holds nothing
                if wrote and not (out / store.CONFIG).exists():
                    _forget(out, not created)
                raise
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


def _write_early(args) -> bool:
    """Write DIR/config.toml (the config and its starting command) before anything is imported.

    Only into a directory this process creates (``mkdir`` is atomic: of two processes
    started together, one creates it); an existing one is written under the engine's lock.
    Returns whether this process created ``DIR``.
    """
    import pathlib

    out = pathlib.Path(args.out)
    try:
        text = pathlib.Path(args.config).read_text()
    except (OSError, UnicodeDecodeError):
        return False  # load_config reports it, in one line
    started, header = _started(args, out)
    _SWEEP_OUT["out"] = out
    if out.exists():
        return False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.mkdir()
    except FileExistsError:
        return False
    except OSError:
        return False  # the engine reports an unwritable directory, in one line
    try:
        tmp = out / f"config.toml.{os.getpid()}.tmp"
        tmp.write_text(header + text)
        try:  # whole or not at all, and never over one a lock holder wrote meanwhile
            os.link(tmp, out / "config.toml")
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    except OSError as e:
        raise OSError(e.errno, f"cannot write to {out}: {e.strerror or e}; nothing was computed; free space or "
                               f"fix the directory, then start again") from None
    return True


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _forget(out, existed: bool) -> None:
    """Remove what this run wrote into ``out`` before its plan was refused (the config, the locks)."""
    from dynsim.engine import store

    for p in list(out.iterdir()):
        if p.name in (store.SOURCE, store.SOURCE + ".tmp") or p.name.startswith(store.LOCK):
            p.unlink(missing_ok=True)
    if not existed and not any(out.iterdir()):
        out.rmdir()


def _dry_run(cfg, args) -> int:
    """``--dry-run``: the plan (points, steps, chunks, store size) and a time from a short calibration run."""
    if "problem" in cfg:
        from dynsim.training import config as training_config

        est = training_config.estimate_config(cfg, chunk_size=args.chunk_size)
    else:
        from dynsim.engine import config

        est = config.estimate_config(cfg, chunk_size=args.chunk_size)
    for line in est["lines"]:
        print(line)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """``dynsim bench [--points N] [--steps S] [--repeats R] [--out FILE] [--json] [--train]``: a text summary."""
    import json

    from dynsim.engine import platform

    platform.configure_xla_cpu()  # before JAX starts: every core a device
    from dynsim import bench

    if args.train:
        kw = {k: v for k, v in (("n_models", args.points), ("steps", args.steps), ("repeats", args.repeats))
              if v is not None}
        result = bench.training.benchmark(**kw)
        if args.json:
            print(json.dumps(result, indent=1, default=str))
        else:
            print("\n".join(bench.training.lines(result)))
    else:
        result = bench.run(points=args.points if args.points is not None else 1 << 18,
                           steps=args.steps if args.steps is not None else 4096,
                           repeats=args.repeats if args.repeats is not None else 5)
        if args.json:
            print(json.dumps(result, indent=1, default=str))
    bench.write(args.out, result)
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    """``dynsim view DIR [--html FILE] [--port N] [--no-browser]``."""
    import pathlib

    out = pathlib.Path(args.dir)
    if not out.is_dir():
        raise UsageError(f"{out}: no such result directory")
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: give 0 (any free port) to 65535")
    try:
        from dynsim import view
    except ImportError as e:
        raise UsageError(f"dynsim view needs the [view] extra (pip install 'dynsim[view]'): {e}") from None
    if args.html:
        html = pathlib.Path(args.html)
        if html.exists():
            raise UsageError(f"--html {html}: exists; results are never overwritten, choose another name")
        if not html.parent.is_dir():
            raise UsageError(f"--html {html}: folder {html.parent} does not exist")
        view.save_html(out, html)
        print(f"view: wrote {html}")
        return 0
    return view.serve(out, port=args.port or 0, open_browser=not args.no_browser,
                      announce=lambda line: print(line, flush=True))


def _cmd_data(args: argparse.Namespace) -> int:
    from dynsim import cli_data

    return cli_data.command(args.action, args.name, data_dir=args.data_dir, backend=args.backend)


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

    # --out is required with CONFIG, and CONFIG is absent with --resume: the usage says both forms
    s = sub.add_parser("sweep", help="run a hyperparameter sweep from a TOML config",
                       usage="dynsim sweep CONFIG.toml --out DIR [options]\n       dynsim sweep --resume DIR")
    s.add_argument("config", nargs="?", help="sweep config (TOML); omit with --resume")
    s.add_argument("--out", metavar="DIR", help="result directory (zarr store + config); required with CONFIG")
    s.add_argument("--resume", metavar="DIR", help="resume the sweep stored in DIR")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set steps=4096 (repeatable)")
    s.add_argument("--chunk-size", type=int, default=None, help="points per chunk")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.add_argument("--dry-run", action="store_true",
                   help="print points, steps, chunks, store size and an estimated time (from a short "
                        "calibration run); write nothing")
    s.set_defaults(func=_cmd_sweep)

    b = sub.add_parser("bench", help="throughput against a same-process reference")
    b.add_argument("--train", action="store_true", help="benchmark vmapped training")
    b.add_argument("--points", type=int, default=None, help="grid points")
    b.add_argument("--steps", type=int, default=None, help="steps per point")
    b.add_argument("--repeats", type=int, default=5, help="timed repeats (median quoted)")
    b.add_argument("--out", default=None, help="also write the result JSON here")
    b.add_argument("--json", action="store_true", help="also print the result JSON")
    b.set_defaults(func=_cmd_bench)

    v = sub.add_parser("view", help="interactive page over a result store (or a static --html file)")
    v.add_argument("dir", metavar="DIR", help="a sweep or training result directory")
    v.add_argument("--html", metavar="FILE", default=None, help="write a self-contained static page and exit")
    v.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    v.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    v.set_defaults(func=_cmd_view)

    d = sub.add_parser("data", help="fetch or check datasets")
    d.add_argument("action", choices=["get", "check", "path"])
    d.add_argument("name", help="dataset: mnist, fashion_mnist, cifar10")
    d.add_argument("--data-dir", default=None, help="folder holding the dataset files (default "
                   "$DYNSIM_DATA_DIR/NAME or ~/.cache/dynsim/NAME; with --backend tfds the tensorflow_datasets folder)")
    d.add_argument("--backend", choices=["files", "tfds"], default="files",
                   help="files (default), or tfds: build/read a tensorflow_datasets folder offline")
    d.set_defaults(func=_cmd_data)
    return p


def main(argv: list[str] | None = None, *, program: bool = False) -> int:
    """Run one command; ``program=True`` when this process is the ``dynsim`` program itself.

    The program's signals are then the CLI's: a sweep installs its own handlers, every
    other command gets Python's default back from the start-up guard of
    :mod:`dynsim.__main__` (a Ctrl-C is then the one-line ``interrupted`` below).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if program and args.command != "sweep":
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"dynsim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, an unwritable or busy directory: the message says what to do
        print(f"dynsim {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dynsim {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if program and args.command == "sweep":
            _quiet_shutdown()
        elif "previous" in _SWEEP_OUT:  # main([...]) from Python: give the caller its handlers back
            import signal

            for sig, handler in _SWEEP_OUT.pop("previous").items():
                signal.signal(sig, handler)


def _quiet_shutdown() -> None:
    """The sweep has ended (its line is printed): a signal now must not kill the interpreter's teardown.

    Python resets its own handlers to the default at finalization, so a Ctrl-C while XLA
    shuts down used to end a finished run with "killed by SIGINT"; ignored signals stay
    ignored. Only when running as the program: ``main([...])`` from Python leaves them alone.
    """
    import signal

    sys.stdout.flush()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
