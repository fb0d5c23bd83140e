"""Training data: preprocessed sites from manifests -> normalised multi-crop views.

Batches are a pure function of ``(seed, step)``: the site order is a fixed permutation per
pass over the data, and every sample gets its own generator seeded from ``(seed, step, slot)``.
A resumed run therefore sees exactly the data an uninterrupted run would have seen, whatever
the number of DataLoader workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from paintssl.preprocess.codec import cell_mask, read_scaled_site
from paintssl.pretrain.preemption import ignore_stop_signals
from paintssl.tables import CHANNELS, DNA, PLATE, WELL

log = logging.getLogger(__name__)

ViewTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], list[torch.Tensor]]
"""(site (C, H, W) in [0, 1], cell mask (H, W), generator) -> list of views in [0, 1]."""
WellViewTransform = Callable[
    [list[tuple[torch.Tensor, torch.Tensor]], torch.Generator], list[torch.Tensor]
]
"""((site, cell mask) of each drawn site of a well, generator) -> list of views in [0, 1]."""


def read_sites(manifests: Sequence[str | Path], channels: Sequence[str]) -> pd.DataFrame:
    """Rows of all manifests with absolute image paths; refuse other channel orders."""
    tables = []
    expected = ",".join(channels)
    for manifest in manifests:
        sites = pd.read_parquet(manifest, columns=[PLATE, WELL, "path", "channels", "dna_otsu"])
        wrong = sorted(set(sites["channels"]) - {expected})
        if wrong:
            raise ValueError(
                f"{manifest}: images have channels {wrong}, expected '{expected}'; "
                "preprocess with the same `channels` as the pretraining run"
            )
        root = Path(manifest).parent
        tables.append(sites.assign(path=[str(root / p) for p in sites["path"]]))
    if not tables or sum(map(len, tables)) == 0:
        raise ValueError(f"no training sites in manifests {list(map(str, manifests))}")
    return pd.concat(tables, ignore_index=True)


def sample_seed(seed: int, step: int, slot: int) -> int:
    """Seed of the generator for sample ``slot`` of global batch ``step``."""
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1)[0])


class SiteViews(Dataset):
    """Sites of the training plates; item ``(index, seed)`` is that site's normalised views."""

    def __init__(
        self,
        manifests: Sequence[str | Path],
        transform: ViewTransform,
        mean: Sequence[float],
        std: Sequence[float],
        channels: Sequence[str] = CHANNELS,
        cache_mb: float = 0.0,
    ) -> None:
        if DNA not in channels:
            raise ValueError(f"channels {list(channels)} lack {DNA!r}, needed for cell-aware crops")
        self.sites = read_sites(manifests, channels)
        self.transform = transform
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.dna_index = list(channels).index(DNA)
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.sites)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Site ``index`` as (C, H, W) float in [0, 1] and its cell mask (the cell rule).

        Decoded sites are kept in memory (in each DataLoader process) until ``cache_mb`` is
        full; later ones are read from disk every time. The transforms must not change the
        site in place (tested for every objective).
        """
        if index in self._cache:
            return self._cache[index]
        row = self.sites.iloc[index]
        image = torch.from_numpy(read_scaled_site(row["path"]))
        cells = cell_mask(image[self.dna_index], float(row["dna_otsu"]))
        size = image.nbytes + cells.nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = image, cells
            self._cached_bytes += size
        return image, cells

    def normalise(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Return views in training-set units: minus the channel mean, over the channel std."""
        return [(view - self.mean) / self.std for view in views]

    def __getitem__(self, key: tuple[int, int]) -> list[torch.Tensor]:
        index, seed = key
        image, cells = self.load(index)
        gen = torch.Generator().manual_seed(seed)
        return self.normalise(self.transform(image, cells, gen))


class WellViews(SiteViews):
    """Wells of the training plates; item ``(index, seed)``: views of ``sites_per_well`` sites.

    The sites are drawn without replacement (a well with fewer sites repeats them). An
    epoch is a pass over the wells. The transform gets the sites in the drawn order.
    """

    def __init__(
        self,
        manifests: Sequence[str | Path],
        transform: WellViewTransform,
        mean: Sequence[float],
        std: Sequence[float],
        channels: Sequence[str] = CHANNELS,
        sites_per_well: int = 2,
        cache_mb: float = 0.0,
    ) -> None:
        super().__init__(manifests, transform, mean, std, channels, cache_mb)
        if sites_per_well < 1:
            raise ValueError(f"sites_per_well must be >= 1, got {sites_per_well}")
        self.sites_per_well = sites_per_well
        groups = self.sites.groupby([PLATE, WELL], sort=True).indices
        self.wells = [np.asarray(groups[key]) for key in sorted(groups)]
        short = sum(len(members) < sites_per_well for members in self.wells)
        if short:
            log.warning("%d of %d training wells have fewer than %d sites: their sites repeat",
                        short, len(self.wells), sites_per_well)  # fmt: skip

    def __len__(self) -> int:
        return len(self.wells)

    def draw_sites(self, index: int, gen: torch.Generator) -> list[int]:
        """Rows of ``sites`` of well ``index``: a random order, cycled to ``sites_per_well``."""
        members = self.wells[index]
        order = torch.randperm(len(members), generator=gen).tolist()
        return [int(members[order[i % len(members)]]) for i in range(self.sites_per_well)]

    def __getitem__(self, key: tuple[int, int]) -> list[torch.Tensor]:
        index, seed = key
        gen = torch.Generator().manual_seed(seed)
        sites = [self.load(row) for row in self.draw_sites(index, gen)]
        return self.normalise(self.transform(sites, gen))


def training_views(
    manifests: Sequence[str | Path],
    transform: ViewTransform | WellViewTransform,
    mean: Sequence[float],
    std: Sequence[float],
    channels: Sequence[str] = CHANNELS,
    sites_per_well: int | None = None,
    cache_mb: float = 0.0,
) -> SiteViews:
    """Return the training set an objective samples: sites, or wells of ``sites_per_well``."""
    if sites_per_well is None:
        return SiteViews(manifests, transform, mean, std, channels, cache_mb)
    return WellViews(manifests, transform, mean, std, channels, sites_per_well, cache_mb)


class StepBatches(Sampler):
    """Batch sampler over steps ``start..total-1``: this rank's ``(index, seed)`` keys.

    The global sample stream concatenates one permutation of the sites per pass (seeded by
    ``(seed, pass)``); step ``s`` takes stream positions ``[s * B, (s + 1) * B)`` and rank
    ``r`` of ``W`` takes the ``r``-th of ``W`` equal slices.
    """

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        seed: int,
        start: int,
        total: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world_size} processes")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.start, self.total = start, total
        self.local = batch_size // world_size
        self.offset = rank * self.local
        self._perm_pass, self._perm = -1, np.arange(0)

    def __len__(self) -> int:
        return max(self.total - self.start, 0)

    def _index(self, position: int) -> int:
        data_pass, within = divmod(position, self.n_items)
        if data_pass != self._perm_pass:
            rng = np.random.default_rng([self.seed, data_pass])
            self._perm_pass, self._perm = data_pass, rng.permutation(self.n_items)
        return int(self._perm[within])

    def batch(self, step: int) -> list[tuple[int, int]]:
        """Return this rank's keys of global batch ``step``."""
        slots = range(self.offset, self.offset + self.local)
        return [
            (self._index(step * self.batch_size + s), sample_seed(self.seed, step, s))
            for s in slots
        ]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            yield self.batch(step)


def step_loader(
    dataset: SiteViews | Dataset,
    sampler: StepBatches,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """DataLoader yielding lists of batched views, one per step of ``sampler``."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        worker_init_fn=ignore_stop_signals,
    )
