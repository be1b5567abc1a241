"""Training data: micrograph folders, grain-size classes, segmentation pairs.

* :func:`load_micrograph` reads one image (any format :mod:`hyperspy_mmdl.io`
  reads) with its calibration, masks the instrument data bar and optionally
  resamples it to a target pixel size.
* :func:`read_image_folder` reads a folder per class (``root/<class>/*``);
  :class:`ImageClassification` serves crops of those images as tensors.
* :func:`grain_size_class` / :func:`grain_size_labels` derive the three
  grain-size classes of SPEC §3.1.6 from segmented grains, so the grain-size
  CNN trains without hand labels.
* :func:`read_segmentation_pairs` and :class:`BoundarySegmentation` serve
  image/boundary-mask pairs for the U-Net.

PCE tables live in :mod:`hyperspy_mmdl.train.tabular`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..calibration import Calibration
from ..preprocess.resample import resample_to_pixel_size
from . import transforms as T

__all__ = [
    "IMAGE_SUFFIXES",
    "GRAIN_SIZE_CLASSES",
    "load_micrograph",
    "ImageSet",
    "read_image_folder",
    "read_classification_data",
    "choose_pixel_size",
    "resample_set",
    "ImageClassification",
    "grain_size_class",
    "grain_size_labels",
    "read_segmentation_pairs",
    "BoundarySegmentation",
    "synthetic_grain_size_set",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".dm3", ".dm4", ".emd", ".hspy", ".zspy")
GRAIN_SIZE_CLASSES = ("small", "medium", "large")


def _read_raw(path: Path):
    """(data, calibration) through :func:`hyperspy_mmdl.io.load`."""
    from hyperspy_mmdl import io as mmdl_io

    img = mmdl_io.load(path)
    return np.asarray(img.data), img.calibration


def _to_channels(data: np.ndarray, in_chans: int, path) -> np.ndarray:
    """(H, W) / (H, W, 3|4) / (frames, H, W) -> (in_chans, H, W) float32."""
    x = np.asarray(data)
    if x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[0] > 4:
        x = x[..., :3].astype(np.float32)
        x = x.mean(-1, keepdims=True) if in_chans == 1 else x
        x = np.moveaxis(x, -1, 0)
    elif x.ndim == 2:
        x = x[None].astype(np.float32)
    elif x.ndim == 3:  # frames first: use the first frame
        x = x[:1].astype(np.float32)
    else:
        raise ValueError(f"{path}: expected a 2-D image (or RGB / a stack), got shape {x.shape}")
    if x.shape[0] != in_chans:
        x = np.repeat(x[:1], in_chans, axis=0)
    return x


def _mask_data_bar(x: np.ndarray, calibration: Calibration):
    """Crop the instrument data bar (FEI, Zeiss, JEOL information strip) when there is one."""
    from hyperspy_mmdl.preprocess.databar import find_data_bar

    bar = find_data_bar(x[0])
    if bar is None or not bar.top:
        return x, calibration
    return x[:, : bar.top], calibration.cropped(rows=slice(0, bar.top))


def load_micrograph(path, *, in_chans: int = 1, pixel_size: float | None = None, unit: str = "µm",
                    mask_data_bar: bool = True, normalization: str = "minmax"):
    """Read a micrograph as ``(C, H, W)`` float32 plus its image calibration.

    Parameters
    ----------
    path : str or Path
    in_chans : int
        1 (grey; RGB is averaged) or 3 (grey is repeated).
    pixel_size : float, optional
        Resample to this pixel size (in ``unit``). Needs a calibrated file.
    unit : str
        Unit of ``pixel_size``.
    mask_data_bar : bool
        Crop a detected instrument data bar (:mod:`hyperspy_mmdl.preprocess.databar`).
    normalization : str
        See :func:`hyperspy_mmdl.train.transforms.normalize`.

    Returns
    -------
    image : ndarray, shape (C, H, W)
    calibration : Calibration
        Of the returned image (after cropping/resampling).
    """
    path = Path(path)
    data, cal = _read_raw(path)
    x = _to_channels(data, in_chans, path)
    cal = cal.image if cal.ndim > 2 else cal
    if mask_data_bar:
        x, cal = _mask_data_bar(x, cal)
    if pixel_size is not None:
        if not cal.is_calibrated:
            raise ValueError(f"{path}: cannot resample to {pixel_size} {unit}/px, the image is uncalibrated")
        x, cal = resample_to_pixel_size(x, cal, pixel_size, unit)
    return T.normalize(x, normalization), cal


@dataclass
class ImageSet:
    """Images of a classification task held in memory.

    ``images`` are ``(C, H, W)`` float32 arrays (normalised, resampled);
    ``labels`` class indices; ``groups`` an optional source id per image (to
    split crops of one micrograph together).
    """

    images: list
    labels: np.ndarray
    class_names: list
    paths: list = field(default_factory=list)
    calibrations: list = field(default_factory=list)
    groups: np.ndarray | None = None

    def __len__(self):
        return len(self.images)

    def summary(self) -> dict:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {"n": len(self), "per_class": dict(zip(self.class_names, counts.tolist()))}

    def pixel_size(self):
        """Common pixel size and unit of the images, or ``(None, "px")`` when mixed/uncalibrated."""
        sizes = {(round(c.pixel_size[1], 9), c.unit) for c in self.calibrations if c.is_calibrated}
        if len(sizes) == 1 and all(c.is_calibrated for c in self.calibrations):
            (size, u), = sizes
            return float(size), u
        return None, "px"


def _class_files(folder: Path, suffixes) -> list[tuple[Path, str]]:
    """``(file, source)`` of one class folder: loose images are their own source, a sub-folder is one source."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in suffixes:
            out.append((p, p.name))
        elif p.is_dir():
            out += [(f, p.name) for f in sorted(p.rglob("*"))
                    if f.is_file() and f.suffix.lower() in suffixes and not f.name.startswith(".")]
    return out


def read_image_folder(root, *, class_names=None, in_chans: int = 1, pixel_size: float | None = None,
                      unit: str = "µm", mask_data_bar: bool = True, normalization: str = "minmax",
                      suffixes=IMAGE_SUFFIXES) -> ImageSet:
    """Read ``root/<class name>/<images>`` (one sub-folder per class).

    Inside a class folder, images may also sit in sub-folders, one per source
    micrograph (``root/<class>/<source>/<crop>.png``): crops of one source
    then form one group (:attr:`ImageSet.groups`) and are never split between
    training and held-out data. A loose image is its own group.

    Parameters
    ----------
    root : str or Path
    class_names : list of str, optional
        Class order (default: sorted sub-folder names). Sub-folders not listed
        are ignored; a listed class without a folder raises ``ValueError``.
    in_chans, pixel_size, unit, mask_data_bar, normalization
        As :func:`load_micrograph`.

    Examples
    --------
    >>> read_image_folder("no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: training data folder not found: no/such/folder
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is None:
        class_names = [p.name for p in folders]
    missing = [c for c in class_names if not (root / c).is_dir()]
    if missing:
        raise ValueError(f"{root}: no sub-folder for class(es) {missing}; found {[p.name for p in folders]}")
    if len(class_names) < 2:
        raise ValueError(f"{root}: need at least two class sub-folders, found {[p.name for p in folders]}")
    images, labels, paths, cals, groups = [], [], [], [], []
    for ci, name in enumerate(class_names):
        files = _class_files(root / name, suffixes)
        if not files:
            raise ValueError(f"{root / name}: no images ({', '.join(suffixes)})")
        for f, source in files:
            x, cal = load_micrograph(f, in_chans=in_chans, pixel_size=pixel_size, unit=unit,
                                     mask_data_bar=mask_data_bar, normalization=normalization)
            images.append(x)
            labels.append(ci)
            paths.append(str(f))
            cals.append(cal)
            groups.append(f"{name}/{source}")
    return ImageSet(images, np.asarray(labels, dtype=np.int64), list(class_names), paths, cals,
                    np.asarray(groups))


#: pixel sizes of calibrated images that differ by more than this factor are brought to their median
MIXED_PIXEL_RATIO = 1.25


def resample_set(image_set: ImageSet, pixel_size: float, unit: str = "µm") -> ImageSet:
    """The images of a set resampled to one pixel size (all must be calibrated)."""
    bad = [p for p, c in zip(image_set.paths or [""] * len(image_set), image_set.calibrations)
           if not c.is_calibrated]
    if bad:
        raise ValueError(f"cannot resample to {pixel_size:g} {unit}/px: {len(bad)} image(s) are uncalibrated, "
                         f"e.g. {bad[0]}")
    out, cals = [], []
    for x, c in zip(image_set.images, image_set.calibrations):
        y, c2 = resample_to_pixel_size(x, c, pixel_size, unit)
        out.append(y)
        cals.append(c2)
    return ImageSet(out, image_set.labels, image_set.class_names, image_set.paths, cals, image_set.groups)


def choose_pixel_size(calibrations, requested: float | None = None, recipe_pixel: float | None = None,
                      unit: str = "µm"):
    """The pixel size a training set is brought to, and why.

    * ``requested`` (the user's choice) always wins; every image must be calibrated.
    * A recipe's pixel size is used when every image is calibrated; otherwise
      the images are used at their own pixel size (an uncalibrated folder
      trains as it is, with a note).
    * Without either, calibrated images whose pixel sizes differ by more than
      :data:`MIXED_PIXEL_RATIO` are brought to their median pixel size.

    Returns
    -------
    pixel_size : float or None
        In ``unit``; ``None`` leaves the images at their own pixel size.
    note : str
        One sentence for the log ('' when there is nothing to say).

    Examples
    --------
    >>> choose_pixel_size([Calibration.uncalibrated(2)], recipe_pixel=0.05)[0] is None
    True
    >>> cals = [Calibration.from_pixel_size(s, "nm") for s in (10, 20, 40)]
    >>> choose_pixel_size(cals)
    (0.02, 'pixel sizes differ (0.01 to 0.04 µm/px): all images resampled to their median, 0.02 µm/px')
    """
    from ..calibration import normalize_unit

    unit = normalize_unit(unit)
    if requested:
        return float(requested), ""
    calibrated = [c for c in calibrations if c.is_calibrated]
    n_unc = len(calibrations) - len(calibrated)
    if recipe_pixel:
        if n_unc:
            return None, (f"{n_unc} of {len(calibrations)} images are uncalibrated: the recipe's "
                          f"{float(recipe_pixel):g} {unit}/px is not applied, images are used at their own "
                          "pixel size (the model will not resample what it classifies)")
        return float(recipe_pixel), ""
    if n_unc or not calibrated:
        return None, ""
    sizes = np.array([c.pixel_size_in(unit)[1] for c in calibrated], dtype=float)
    if sizes.max() / sizes.min() <= MIXED_PIXEL_RATIO:
        return None, ""
    median = float(np.round(np.median(sizes), 6))
    return median, (f"pixel sizes differ ({sizes.min():.3g} to {sizes.max():.3g} {unit}/px): all images "
                    f"resampled to their median, {median:g} {unit}/px")


def read_classification_data(root, recipe: dict, *, pixel_size: float | None = None, unit: str = "µm",
                             grain_size_classes: bool = False, log=None) -> ImageSet:
    """The training set of ``mmdl train --task classify`` and of the Train widget (one place for both).

    Parameters
    ----------
    root : str or Path
        A folder per class (:func:`read_image_folder`), or with
        ``grain_size_classes`` any folder of calibrated micrographs labelled
        small / medium / large by their own measured mean grain size
        (:func:`grain_size_labels`).
    recipe : dict
        Its ``[data]`` section gives ``in_chans``, ``normalization``,
        ``mask_data_bar`` and an optional ``pixel_size``.
    pixel_size : float, optional
        Resample every image to this pixel size (in ``unit``); see
        :func:`choose_pixel_size` for the default.
    unit : str
    grain_size_classes : bool
    log : callable, optional
        Called with one-line notes (pixel size chosen, classes found).

    Returns
    -------
    ImageSet
        Normalised as the recipe says, at the chosen pixel size.

    Examples
    --------
    >>> read_classification_data("no/such/folder", {"data": {}})
    Traceback (most recent call last):
    ...
    FileNotFoundError: training data folder not found: no/such/folder
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    log = log or (lambda _msg: None)
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # one note for the folder, not one per file
        warnings.simplefilter("always")
        image_set = _read_classification_data(root, recipe, pixel_size, unit, grain_size_classes, log)
    from hyperspy_mmdl.io import NO_CALIBRATION

    quiet = [w for w in caught if str(w.message).endswith(NO_CALIBRATION)]
    for w in caught:
        if w not in quiet:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if quiet:
        log(f"{len(quiet)} of {len(image_set)} images have no spatial calibration (pixel units)")
    return image_set


def _read_classification_data(root: Path, recipe: dict, pixel_size, unit, grain_size_classes, log) -> ImageSet:
    d = recipe.get("data", {})
    kw = dict(in_chans=int(d.get("in_chans", 1)), mask_data_bar=bool(d.get("mask_data_bar", True)),
              normalization="none")
    if grain_size_classes:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{root}: no images")
        loaded = [load_micrograph(f, **kw) for f in files]
        unc = [str(f) for f, (_, c) in zip(files, loaded) if not c.is_calibrated]
        if unc:
            raise ValueError(f"grain-size classes need calibrated micrographs; {len(unc)} uncalibrated, "
                             f"e.g. {unc[0]}")
        labels, _ = grain_size_labels([x for x, _ in loaded], [c for _, c in loaded])
        image_set = ImageSet([x for x, _ in loaded], labels, list(GRAIN_SIZE_CLASSES), [str(f) for f in files],
                             [c for _, c in loaded], np.asarray([str(f) for f in files]))
        log(f"grain-size classes from measured mean D_eq: {image_set.summary()['per_class']}")
    else:
        image_set = read_image_folder(root, **kw)
    target, note = choose_pixel_size(image_set.calibrations, pixel_size, d.get("pixel_size"), unit)
    if note:
        log(note)
    if target is not None:
        image_set = resample_set(image_set, target, unit)
    norm = d.get("normalization", "minmax")
    image_set.images = [T.normalize(x, norm) for x in image_set.images]
    return image_set


class ImageClassification:
    """A torch-style dataset of ``(image tensor (C, S, S), label)`` from in-memory images.

    Parameters
    ----------
    images : list of ndarray (C, H, W)
    labels : array_like of int
    size : int
        Side of the model input.
    augment : Augment, optional
        Training augmentation (random crop/dihedral/contrast); without it a
        centre crop (``fit="crop"``) or a resize (``fit="resize"``) is used.
    fit : {"crop", "resize"}
        How an image of another size becomes ``size × size`` at evaluation.
        ``"crop"`` keeps the pixel size (reflect-padding small images).
    seed : int
        Augmentation seed (reseeded per epoch by :meth:`set_epoch`).
    """

    def __init__(self, images, labels, size: int, *, augment=None, fit: str = "crop", seed: int = 2024):
        if fit not in ("crop", "resize"):
            raise ValueError(f"fit must be 'crop' or 'resize', got {fit!r}")
        self.images = list(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.images) != self.labels.size:
            raise ValueError(f"{len(self.images)} images but {self.labels.size} labels")
        self.size = int(size)
        self.augment = augment
        self.fit = fit
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, int(epoch)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import torch

        x = self.images[i]
        if self.fit == "resize":
            x = T.resize(x, (self.size, self.size))
        if self.augment is not None:
            x = self.augment(self.rng, x)
        else:
            x = T.center_crop(x, self.size)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self.labels[i])


def grain_size_class(mean_ecd_um, thresholds=(0.4, 0.8)) -> np.ndarray:
    """Grain-size class of SPEC §3.1.6 from the mean D_eq in µm: 0 small, 1 medium, 2 large.

    Values equal to a threshold are "medium" (``0.4 ≤ D̄ ≤ 0.8``).
    """
    d = np.asarray(mean_ecd_um, dtype=float)
    lo, hi = thresholds
    return np.where(d < lo, 0, np.where(d > hi, 2, 1)).astype(np.int64)


def grain_size_labels(images, calibrations, *, segment_kwargs=None, label_images=None,
                      thresholds=(0.4, 0.8)):
    """Grain-size classes computed from the images themselves (no hand labels).

    Each image is analysed by :func:`hyperspy_mmdl.pipeline.analyze_frame`
    (the given ``label_images`` are measured by
    :func:`~hyperspy_mmdl.pipeline.measure_frame`), as on every other route,
    and the mean D_eq is turned into a class with :func:`grain_size_class`.

    Returns
    -------
    classes : ndarray of int
    mean_ecd_um : ndarray of float
    """
    from hyperspy_mmdl.pipeline import AnalysisParameters, analyze_frame, measure_frame

    params = AnalysisParameters.from_segment_kwargs(segment_kwargs)
    means = []
    for i, (img, cal) in enumerate(zip(images, calibrations)):
        if not cal.is_calibrated:
            raise ValueError(f"image {i} is uncalibrated: grain-size classes need a pixel size")
        if label_images is not None:  # given labels (ground truth): every row is analysed
            result = measure_frame(label_images[i], cal, params=params)
        else:
            x = np.asarray(img)
            x = x[0] if x.ndim == 3 and x.shape[0] == 1 else x  # (1, H, W) model inputs
            result = analyze_frame(x, cal, params)
        means.append(float(result.summary["mean_ecd_um"]))
    means = np.asarray(means, dtype=float)
    return grain_size_class(means, thresholds), means


def read_segmentation_pairs(images_dir, masks_dir, *, names=None, threshold: float = 127,
                            normalization: str = "minmax"):
    """Read image/boundary-mask pairs matched by file stem.

    Masks are boundaries bright on black; values above ``threshold`` are
    boundary. Returns ``(images (1, H, W) float32 list, masks (H, W) bool list,
    names)``.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"segmentation folder not found: {d}")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if names is not None:
        wanted = {Path(n).stem for n in names}
        files = [f for f in files if f.stem in wanted]
    masks_by_stem = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    images, masks, out_names = [], [], []
    for f in files:
        if f.stem not in masks_by_stem:
            raise ValueError(f"{f}: no mask with the same name in {masks_dir}")
        x, _ = load_micrograph(f, in_chans=1, mask_data_bar=False, normalization=normalization)
        m, _ = _read_raw(masks_by_stem[f.stem])
        m = np.asarray(m)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != x.shape[1:]:
            raise ValueError(f"{masks_by_stem[f.stem]}: mask shape {m.shape} differs from image {x.shape[1:]}")
        images.append(x)
        masks.append(m > threshold)
        out_names.append(f.name)
    if not images:
        raise ValueError(f"{images_dir}: no images found")
    return images, masks, out_names


class BoundarySegmentation:
    """Random (training) or full (evaluation) crops of image/boundary-mask pairs.

    Items are ``(image (1, S, S) float32, mask (1, S, S) float32)``. Without
    ``augment`` the centre crop of size ``size`` is returned (use ``size=None``
    for the whole image).
    """

    def __init__(self, images, masks, size: int | None, *, augment=None, seed: int = 2024):
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images, self.masks = list(images), [np.asarray(m, dtype=np.float32) for m in masks]
        self.size, self.augment, self.seed = size, augment, int(seed)
        self.rng = np.random.default_rng(self.seed)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, int(epoch)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import torch

        x, m = self.images[i], self.masks[i][None]
        if self.augment is not None:
            x, m = self.augment(self.rng, x, m)
        elif self.size is not None:
            x, m = T.center_crop(x, self.size), T.center_crop(m, self.size)
        return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)))




#: nominal mean-ECD bands (µm) for synthetic grain-size classes, away from the 0.4/0.8 µm thresholds
SYNTHETIC_BANDS = ((0.15, 0.30), (0.50, 0.75), (1.3, 2.2))


def synthetic_grain_size_set(n_per_class: int = 30, *, size: int = 224, pixel_size: float = 0.025,
                             unit: str = "µm", bands=SYNTHETIC_BANDS, noise: float = 0.08,
                             boundary_widths=(0.01, 0.1), oversample: int | None = None,
                             normalization: str = "minmax", seed: int = 2024) -> ImageSet:
    """Synthetic micrographs of the three grain-size classes, labelled by measurement.

    Each image is a :func:`hyperspy_mmdl.synthetic.polycrystal` with a nominal
    mean ECD drawn from one of ``bands``; its class is then computed from the
    measured mean D_eq of its ground-truth grains (:func:`grain_size_labels`),
    exactly as for real images (no hand labels).

    The boundary lines get a physical width drawn from ``boundary_widths``
    (``unit``), so a model does not learn one line width as a size cue. Each
    image is rendered ``oversample`` times finer and block-averaged down to
    ``pixel_size``, as a micrograph resampled to the model's pixel size is:
    lines thinner than a pixel come out faint rather than vanishing or growing
    to a whole pixel. By default ``oversample`` is the smallest integer that
    makes the narrowest line at least one fine pixel wide. Gaussian noise of
    standard deviation ``noise`` is added after the averaging.
    """
    from skimage.transform import downscale_local_mean

    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal

    lo_w, hi_w = (float(w) for w in boundary_widths)
    if not 0 < lo_w <= hi_w:
        raise ValueError(f"boundary_widths must be 0 < low <= high, got {boundary_widths}")
    k = int(oversample) if oversample else max(1, int(np.ceil(pixel_size / lo_w - 1e-9)))
    fine = pixel_size / k
    rng = np.random.default_rng(seed)
    images, cals, label_images, fine_cals = [], [], [], []
    for lo, hi in bands:
        for _ in range(n_per_class):
            width = float(rng.uniform(lo_w, hi_w))
            ecd = float(rng.uniform(lo, hi))
            # lines at most a third of the grain size (the generator's limit)
            width_px = max(1, min(int(round(width / fine)), int(ecd / fine // 3)))
            s = polycrystal(shape=(size * k, size * k), pixel_size=fine, unit=unit,
                            mean_ecd=ecd, cv=0.35, boundary=str(rng.choice(["dark", "bright"])),
                            boundary_width=width_px, noise=0.0, seed=int(rng.integers(2**31)))
            image = downscale_local_mean(s.image, (k, k)) if k > 1 else s.image
            image = image + rng.normal(0.0, noise, image.shape)
            images.append(T.normalize(np.asarray(image, np.float32)[None], normalization))
            cals.append(Calibration.from_pixel_size(pixel_size, unit))
            fine_cals.append(s.calibration)
            label_images.append(s.labels)
    classes, _ = grain_size_labels(images, fine_cals, label_images=label_images)
    return ImageSet(images, classes, list(GRAIN_SIZE_CLASSES), [f"synthetic-{i}" for i in range(len(images))], cals)
