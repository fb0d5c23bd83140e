"""Logging set-up shared by the workflow's job scripts."""

import logging
import sys


def log_to_file(path: str) -> None:
    """Send this job's tracebacks (stderr) and ``logging`` output to its log file."""
    sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 - open for the job's lifetime
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s", force=True
    )
