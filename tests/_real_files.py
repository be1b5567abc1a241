"""The real DM/TIFF files of ../shared/data and what rosettasciio 0.15.0 observed in them.

Each folder's ``observed_rsciio-0.15.0_axes.csv`` lists, per file and per signal,
the array shape and the per-axis name/scale/offset/units (raw reader output);
PROVENANCE.md ties those values to the upstream tests' assertions.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SHARED_DATA

FOLDERS = ("rosettasciio_dm_tiff", "ncempy_dm", "scifireaders_dm")
SUFFIXES = (".dm3", ".dm4", ".tif", ".tiff")
_ENERGY = {"ev", "kev"}
_SPECTRAL_NAMES = {"energy loss", "energy", "wavelength"}


@dataclass
class Observed:
    """One signal of a file as rosettasciio read it (axes in array order)."""

    index: int
    shape: tuple
    dtype: str
    axes: list

    @property
    def is_image(self) -> bool:
        signal = [a for a in self.axes if not a["navigate"]]
        nav = [a for a in self.axes if a["navigate"]]
        # rsciio's raw DM axes keep DM's layout flags; a spectral axis marks a spectrum (image)
        energy = any(str(a.get("units") or "").lower() in _ENERGY
                     or str(a.get("name") or "").lower() in _SPECTRAL_NAMES for a in self.axes)
        return len(signal) == 2 and len(nav) <= 1 and not energy

    @property
    def is_calibrated(self) -> bool:
        return all((a.get("units") or "") not in ("", "<undefined>") for a in self.axes[-2:])


def observed() -> dict[Path, list[Observed]]:
    out: dict[Path, list[Observed]] = {}
    for folder in FOLDERS:
        table = SHARED_DATA / folder / "observed_rsciio-0.15.0_axes.csv"
        if not table.exists():
            continue
        with open(table, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                shape = tuple(int(n) for n in row["shape"].split("x"))
                out.setdefault(SHARED_DATA / folder / row["file"], []).append(
                    Observed(int(row["index"]), shape, row["dtype"], json.loads(row["axes"])))
    return out


def real_files() -> list:
    """All DM/TIFF files of the three folders, as pytest params with readable ids."""
    files = sorted(p for folder in FOLDERS if (SHARED_DATA / folder).is_dir()
                   for p in (SHARED_DATA / folder).rglob("*") if p.suffix.lower() in SUFFIXES)
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"real test data not available in {SHARED_DATA} (clone ../shared beside the project)"))]
    return [pytest.param(p, id=str(p.relative_to(SHARED_DATA))) for p in files]


def expected_image(signals: list[Observed]) -> Observed | None:
    """The signal hyperspy_mmdl.io.load should pick: the first calibrated image, else the first image."""
    images = [s for s in signals if s.is_image]
    calibrated = [s for s in images if s.is_calibrated]
    return (calibrated or images or [None])[0]
