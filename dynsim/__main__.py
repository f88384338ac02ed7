"""``python -m dynsim`` and the ``dynsim`` program: the command line of :mod:`dynsim.cli`.

:func:`run` guards start-up. Until the CLI has parsed its arguments and installed its
own handlers, Python's default would turn a Ctrl-C into a ``KeyboardInterrupt``
traceback from whichever import it lands in (argparse, gettext, ...). The guard is
installed first, before anything else of dynsim is imported, and prints one line.
"""
import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"dynsim: interrupted while starting; nothing was written\n")
    os._exit(128 + signum)


def run() -> int:
    """The program's entry point: the start-up guard, then :func:`dynsim.cli.main`."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted_while_starting)
    from dynsim.cli import main

    return main(program=True)


if __name__ == "__main__":
    sys.exit(run())
