"""Where the tests find the project's shared real data (read-only, never copied in)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """``$PAINTSSL_SHARED_DATA``, else ``../shared/data`` by the clone, else ``/work/shared``."""
    if "PAINTSSL_SHARED_DATA" in os.environ:
        return Path(os.environ["PAINTSSL_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    return next((path for path in candidates if path.is_dir()), candidates[0])


SHARED_DATA = _shared_data()
