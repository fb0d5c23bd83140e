"""Whole synthetic plates on disk: per-channel TIFFs and a JUMP-style ``load_data.csv``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from paintssl.synthetic.config import BASE_SITE, MORPHOLOGIES, Morphology, SyntheticConfig, rng_for
from paintssl.synthetic.layout import plate_layout, plate_row
from paintssl.synthetic.render import (
    Optics,
    acquire,
    illumination,
    optics_of,
    phenotype,
    render_cells,
)
from paintssl.tables import BATCH, CHANNELS, PLATE, SITE, SOURCE, WELL, atomic_path


def _file_name(optics: Optics, plate: str, well: str, site: int, channel: str) -> str:
    ch = optics.channel_order.index(channel) + 1
    if optics.name_style == 0:  # Phenix-like
        row, col = ord(well[0]) - 64, int(well[1:])
        return f"r{row:02d}c{col:02d}f{site:02d}p01-ch{ch}sk1fk1fl1.tiff"
    return f"{plate}_{well}_s{site}_w{ch}.tif"  # ImageXpress-like


@dataclass(frozen=True)
class PlateContext:
    """What all sites of one plate share."""

    cfg: SyntheticConfig
    name: str
    source: str
    batch: str
    morph: Morphology
    layout: pd.DataFrame
    optics: Optics
    drift: np.ndarray
    illum: np.ndarray
    background: np.ndarray
    density: float
    edge_gain: np.ndarray


def plate_context(cfg: SyntheticConfig, plate: str) -> PlateContext:
    """Return what every site of ``plate`` shares: layout, optics, drift, illumination, density."""
    info = plate_row(cfg, plate)
    optics = optics_of(cfg, info["source"])
    illum = illumination(cfg, plate)
    plate_rng = rng_for(cfg, "plate", plate)
    return PlateContext(
        cfg=cfg,
        name=plate,
        source=info["source"],
        batch=info["batch"],
        morph=MORPHOLOGIES[info["cell_line"]],
        layout=plate_layout(cfg, plate),
        optics=optics,
        drift=np.exp(
            rng_for(cfg, "batch", info["batch"]).normal(0.0, cfg.batch_drift, len(CHANNELS))
        ),
        illum=illum,
        background=optics.background.astype(np.float32)[:, None, None] * (0.5 + 0.5 * illum),
        density=float(np.exp(plate_rng.normal(0.0, 0.1))),
        edge_gain=plate_rng.uniform(0.5, 1.5, len(CHANNELS)),
    )


def _site(plate: PlateContext, w: int, site: int) -> np.ndarray:
    """Raw uint16 image (C, H, W) of site ``site`` of the ``w``-th well, in CHANNELS order."""
    cfg, optics, well = plate.cfg, plate.optics, plate.layout.iloc[w]
    pheno = phenotype(plate.morph, well["latent"], optics.pixel_scale)
    edge = cfg.edge_effect * well["edge"]
    area = (cfg.site_size / BASE_SITE) ** 2 / optics.pixel_scale**2
    n_expected = cfg.cells_per_site * plate.morph.density * area * pheno.count_factor
    n_expected *= plate.density * (1.0 - edge)
    gain = plate.drift * (1.0 + edge * plate.edge_gain)
    rng = rng_for(cfg, "site", plate.name, w, site)
    objects = render_cells(pheno, n_expected, cfg.cell_variability, cfg.site_size, rng)
    return acquire(objects, optics, gain, plate.illum, plate.background, rng)


def render_site(context: PlateContext, well: str, site: int) -> np.ndarray:
    """Raw uint16 image (C, H, W) of one site in ``CHANNELS`` order, as render_plate saves it."""
    wells = context.layout["well"].tolist()
    if well not in wells or not 1 <= site <= context.cfg.sites_per_well:
        raise ValueError(f"no site {site} of well {well!r} on synthetic plate {context.name!r}")
    return _site(context, wells.index(well), site)


def render_plate(
    cfg: SyntheticConfig, plate: str, load_data_out: str | Path, images_dir: str | Path
) -> None:
    """Render one plate: a uint16 TIFF per channel per site and a JUMP-style ``load_data.csv``.

    ``PathName_Orig<Ch>`` is written relative to the CSV's folder, and the channel columns
    and channel numbers in file names follow the source's own channel order.
    """
    context = plate_context(cfg, plate)
    order = context.optics.channel_order
    images_dir, load_data_out = Path(images_dir), Path(load_data_out)
    images_dir.mkdir(parents=True, exist_ok=True)
    load_data_out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(os.path.relpath(images_dir, load_data_out.parent)).as_posix()
    rows = []
    for well in context.layout["well"]:
        for site in range(1, cfg.sites_per_well + 1):
            raw = render_site(context, well, site)
            names = {ch: _file_name(context.optics, plate, well, site, ch) for ch in order}
            for channel, name in names.items():
                tifffile.imwrite(images_dir / name, raw[CHANNELS.index(channel)])
            rows.append(
                {SOURCE: context.source, BATCH: context.batch,
                 PLATE: plate, WELL: well, SITE: site}
                | {f"FileName_Orig{ch}": names[ch] for ch in order}
                | {f"PathName_Orig{ch}": folder for ch in order}
            )  # fmt: skip
    with atomic_path(load_data_out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
