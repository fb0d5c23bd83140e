"""What every figure shares: a non-interactive backend, PNG + PDF output, empty panels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from paintssl.tables import atomic_path


def save_figure(fig: Figure, out_png: str | Path, out_pdf: str | Path) -> None:
    """Write ``fig`` as PNG (150 dpi) and PDF, creating folders, and close it."""
    for path, kind in ((out_png, "png"), (out_pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
    plt.close(fig)


def no_data(ax: Axes, message: str) -> None:
    """Replace an empty panel by a centred message."""
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
