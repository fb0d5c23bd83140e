"""Where the tests find the project's shared real data (read-only, never copied in)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """``$PAINTSSL_SHARED_DATA``, else ``../shared/data`` by the clone, else ``/work/shared``."""
    if "PAINTSSL_SHARED_DATA" in os.environ:
        return Path(os.environ["PAINTSSL_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    return next((path for path in candidates if path.is_dir()), candidates[0])


SHARED_DATA = _shared_data()


def require_shared(path: Path) -> None:
    """Skip a test whose shared data is absent here; in CI (``CI`` set) fail it instead.

    CI runs beside a copy of shared/, so a missing file there is a broken test set-up, not
    a reason to pass without checking anything.
    """
    if path.exists():
        return
    message = (
        f"shared data absent: {path} (set PAINTSSL_SHARED_DATA or lay shared/ beside the clone)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
