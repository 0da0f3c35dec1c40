"""The `syncworker` command line: run the worker, operate integrations, manage the database."""

from worker.cli.main import main

__all__ = ["main"]
