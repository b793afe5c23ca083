"""Command line: `python -m skinapp {train,evaluate,ingest,deidentify,predict} …` (see `main.py`)."""

from skinapp.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
