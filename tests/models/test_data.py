"""Offline datasets: built-ins (digits, mnist5k), .npz, ImageFolder and MNIST idx folders,
seeded stratified splits, normalization, loaders, and one-line errors for bad input."""

from __future__ import annotations

import csv
import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.errors import BadInputFileError, NeurodeployError, UnsupportedError
from neurodeploy.models.data import (
    BUILTINS,
    Dataset,
    load_dataset,
    load_splits,
    make_loader,
    mnist5k_path,
    read_idx,
    subset,
)


def raw_of(ds: Dataset) -> np.ndarray:
    """Samples back in source units (per-channel x·std + mean)."""
    return ds.denormalize(ds.x).double().numpy()


def rows_of(x: np.ndarray) -> set[bytes]:
    return {np.round(r).astype(np.int64).tobytes() for r in x.reshape(len(x), -1)}


# ------------------------------------------------------------------------------------------
# Built-ins
# ------------------------------------------------------------------------------------------


def test_digits_counts_shapes_and_stratified_split():
    from sklearn.datasets import load_digits

    train, test = load_splits("digits", seed=0)
    assert len(train) + len(test) == 1797
    assert train.in_shape == test.in_shape == (1, 8, 8)
    assert train.x.shape == (len(train), 1, 8, 8) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64 and train.num_classes == 10
    # per class: round(0.8 n) train, the rest test (class sizes from sklearn directly)
    n = np.bincount(load_digits().target)
    assert np.array_equal(np.bincount(train.y.numpy(), minlength=10), np.round(0.8 * n))
    assert np.array_equal(np.bincount(test.y.numpy(), minlength=10), n - np.round(0.8 * n))
    # train and test are disjoint and together are exactly sklearn's images (values 0..16)
    all_rows = rows_of(load_digits().images)
    tr, te = rows_of(raw_of(train)), rows_of(raw_of(test))
    assert tr | te <= all_rows and len(tr | te) == len(all_rows)


def test_normalization_uses_training_statistics():
    train, test = load_splits("digits", seed=3)
    raw_train = raw_of(train)
    mean, std = train.normalization
    assert test.normalization == train.normalization
    assert mean[0] == pytest.approx(raw_train.mean(), rel=1e-5)
    assert std[0] == pytest.approx(raw_train.std(), rel=1e-5)
    assert float(train.x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(train.x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    # test samples are normalized with the *training* statistics: back to whole numbers 0..16
    raw_test = raw_of(test)
    assert np.allclose(raw_test, np.round(raw_test), atol=1e-4)
    assert raw_test.min() >= -1e-4 and raw_test.max() <= 16 + 1e-4
    assert float(test.x.mean()) != pytest.approx(0.0, abs=1e-6)


def test_split_is_deterministic_for_a_seed():
    a = load_dataset("digits", split="test", seed=7)
    b = load_dataset("digits", split="test", seed=7)
    c = load_dataset("digits", split="test", seed=8)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.shape == c.x.shape and not torch.equal(a.x, c.x)


def test_mnist5k_counts_balance_and_content():
    train, test = load_splits("mnist5k", seed=0)
    assert (len(train), len(test)) == (4000, 1000)
    assert train.in_shape == (1, 28, 28) and train.num_classes == 10
    assert np.bincount(train.y.numpy()).tolist() == [400] * 10
    assert np.bincount(test.y.numpy()).tolist() == [100] * 10
    # independent read of the CSV: 784 pixels then the label; every row appears exactly once
    with gzip.open(mnist5k_path(), "rt") as f:
        table = np.array([[int(v) for v in row] for row in csv.reader(f)])
    assert table.shape == (5000, 785)
    pixels, labels = table[:, :784], table[:, 784]
    assert Counter(labels.tolist()) == {c: 500 for c in range(10)}
    ours = np.concatenate([raw_of(train), raw_of(test)]).reshape(5000, 784)
    ours_y = np.concatenate([train.y.numpy(), test.y.numpy()])
    assert np.allclose(ours, np.round(ours), atol=2e-3)
    key = lambda img, lab: (int(lab), np.round(img).astype(np.int64).tobytes())  # noqa: E731
    assert Counter(key(i, c) for i, c in zip(ours, ours_y)) == Counter(
        key(i, c) for i, c in zip(pixels, labels))
    # spot check: the file's first row is a zero with pixel (9, 20) = 255, (14, 14) = 0
    first = [i for i, img in enumerate(ours)
             if ours_y[i] == 0 and np.array_equal(np.round(img), pixels[0])]
    assert len(first) == 1
    img = ours[first[0]].reshape(28, 28)
    assert round(img[9, 20]) == 255 and round(img[14, 14]) == 0 and round(img.sum()) == 31095


def test_subset_and_loader_are_seeded():
    train = load_dataset("digits")
    small = subset(train, 100, seed=1)
    assert len(small) == 100 and small.normalization == train.normalization
    assert torch.equal(small.x, subset(train, 100, seed=1).x)
    assert subset(train, 10**6) is train
    order = [y.tolist() for _, y in make_loader(small, 16, shuffle=True, seed=5)]
    again = [y.tolist() for _, y in make_loader(small, 16, shuffle=True, seed=5)]
    other = [y.tolist() for _, y in make_loader(small, 16, shuffle=True, seed=6)]
    assert order == again and order != other
    assert [len(b) for b in order] == [16] * 6 + [4]
    assert sorted(sum(order, [])) == sorted(small.y.tolist())


# ------------------------------------------------------------------------------------------
# .npz files
# ------------------------------------------------------------------------------------------


def _xy(n=40, shape=(3, 5, 4), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape)).astype(np.float32)
    y = np.arange(n) % classes
    return x, y


def test_npz_nchw(tmp_path):
    x, y = _xy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    train, test = load_splits(tmp_path / "d.npz", seed=0)
    assert train.in_shape == (3, 5, 4) and (len(train), len(test)) == (32, 8)
    assert train.name == "d" and train.num_classes == 4
    assert len(train.normalization[0]) == 3  # per channel
    ch_mean = [float(train.normalization[0][c]) for c in range(3)]
    assert np.allclose(ch_mean, raw_of(train).mean(axis=(0, 2, 3)), rtol=1e-5)
    assert rows_of(raw_of(train)) | rows_of(raw_of(test)) == rows_of(x)


def test_npz_nhwc_and_flat_and_own_splits(tmp_path):
    x, y = _xy()
    np.savez(tmp_path / "nhwc.npz", x=x.transpose(0, 2, 3, 1).astype(np.uint8), y=y)
    tr, te = load_splits(tmp_path / "nhwc.npz")
    assert tr.in_shape == (3, 5, 4)
    assert rows_of(raw_of(tr)) | rows_of(raw_of(te)) == rows_of(x)
    # last axis 1 but second axis 3: NCHW (C=3, H=5, W=1), not NHWC
    np.savez(tmp_path / "ambiguous.npz", x=x[..., :1], y=y)
    assert load_dataset(tmp_path / "ambiguous.npz").in_shape == (3, 5, 1)
    np.savez(tmp_path / "flat.npz", x=x.reshape(40, -1), y=y.astype(np.float64))
    flat = load_dataset(tmp_path / "flat.npz")
    assert flat.in_shape == (60,) and len(flat.normalization[0]) == 1
    np.savez(tmp_path / "own.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:],
             y_test=y[30:])
    tr, te = load_splits(tmp_path / "own.npz", seed=123)
    assert (len(tr), len(te)) == (30, 10)
    assert rows_of(raw_of(te)) == rows_of(x[30:])


# ------------------------------------------------------------------------------------------
# ImageFolder and MNIST idx folders
# ------------------------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_gray(tmp_path):
    values = {"cat": 10, "dog": 200}
    for name, v in values.items():
        for i in range(5):
            a = np.full((4, 6), v, np.uint8)
            a[0, i] = 0
            _png(tmp_path / "imgs" / name / f"{i}.png", a)
    train, test = load_splits(tmp_path / "imgs", seed=0)
    assert train.classes == ("cat", "dog")
    assert train.in_shape == (1, 4, 6) and (len(train), len(test)) == (8, 2)
    assert np.bincount(test.y.numpy()).tolist() == [1, 1]
    for ds in (train, test):
        raw = raw_of(ds)
        for img, label in zip(raw, ds.y.tolist()):
            want = np.full((4, 6), [10, 200][label], float)
            assert np.allclose(np.sort(img.ravel())[1:], np.sort(want.ravel())[1:], atol=1e-3)
            assert round(img.min()) == 0


def test_image_folder_rgb_resize_and_train_test_folders(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for name in ("a", "b", "c"):
            for i in range(n):
                size = (10, 12) if i % 2 else (6, 6)
                _png(tmp_path / split / name / f"{i}.png",
                     rng.integers(0, 256, (*size, 3)).astype(np.uint8))
    with pytest.raises(BadInputFileError, match="image size"):
        load_splits(tmp_path)
    train, test = load_splits(tmp_path, image_size=8)
    assert train.in_shape == (3, 8, 8) and (len(train), len(test)) == (9, 6)
    assert train.classes == ("a", "b", "c") and np.bincount(test.y.numpy()).tolist() == [2] * 3
    assert load_dataset(tmp_path, image_size=(5, 7)).in_shape == (3, 5, 7)


def _idx(path: Path, array: np.ndarray) -> None:
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    data += struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("layout", ["MNIST/raw", "raw", "."])
def test_mnist_idx_folder(tmp_path, layout):
    rng = np.random.default_rng(1)
    x, xt = rng.integers(0, 256, (12, 5, 7)), rng.integers(0, 256, (6, 5, 7))
    y, yt = np.arange(12) % 3, np.arange(6) % 3
    folder = tmp_path / layout
    _idx(folder / "train-images-idx3-ubyte.gz", x)
    _idx(folder / "train-labels-idx1-ubyte", y)
    _idx(folder / "t10k-images-idx3-ubyte", xt)
    _idx(folder / "t10k-labels-idx1-ubyte.gz", yt)
    assert np.array_equal(read_idx(folder / "t10k-images-idx3-ubyte"), xt)
    train, test = load_splits(tmp_path)
    assert train.in_shape == (1, 5, 7) and (len(train), len(test)) == (12, 6)
    assert train.num_classes == 3
    assert np.allclose(raw_of(train)[:, 0], x, atol=1e-3)  # own split: order kept
    assert np.allclose(raw_of(test)[:, 0], xt, atol=1e-3)
    assert train.y.tolist() == y.tolist() and test.y.tolist() == yt.tolist()


# ------------------------------------------------------------------------------------------
# Errors: each is one line and names the problem
# ------------------------------------------------------------------------------------------


def _error(spec, match: str, kind: type[Exception] = BadInputFileError, **kw) -> str:
    with pytest.raises(kind, match=match) as info:
        load_dataset(spec, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_name_lists_builtins():
    message = _error("cifar10", "unknown dataset", NeurodeployError)
    assert all(name in message for name in BUILTINS)
    _error("digits", "unknown split", NeurodeployError, split="validation")


def test_missing_and_unsupported_files(tmp_path):
    assert str(tmp_path / "nope.npz") in _error(tmp_path / "nope.npz", "no such file")
    (tmp_path / "d.csv").write_text("1,2\n")
    _error(tmp_path / "d.csv", "unsupported dataset file suffix", UnsupportedError)
    (tmp_path / "bad.npz").write_text("not a zip")
    _error(tmp_path / "bad.npz", "not a readable .npz")
    (tmp_path / "empty").mkdir()
    _error(tmp_path / "empty", "no class subfolders")


@pytest.mark.parametrize("arrays, match", [
    ({"a": np.zeros((4, 2)), "b": np.zeros(4)}, "expected arrays 'x' and 'y'.*found 'a', 'b'"),
    ({"x": np.zeros((5, 2)), "y": np.zeros(4)}, "5 samples but 'y' has 4 labels"),
    ({"x": np.zeros((0, 2)), "y": np.zeros(0)}, "empty"),
    ({"x": np.array([[0.0, np.nan]] * 4), "y": np.arange(4)}, "NaN"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1.5, 2, 3])}, "non-integer"),
    ({"x": np.zeros((4, 2)), "y": np.array(["a", "b", "a", "b"])}, "expected integers"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, -1, 1, 0])}, "negative"),
    ({"x": np.zeros((4, 2, 2, 2, 2)), "y": np.arange(4)}, r"expected \(N, C, H, W\)"),
    ({"x": np.array([None] * 4, dtype=object), "y": np.arange(4)}, "cannot read arrays"),
])
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    message = _error(tmp_path / "d.npz", match)
    assert message.startswith(str(tmp_path / "d.npz"))


def test_bad_images_and_idx(tmp_path):
    _png(tmp_path / "imgs" / "a" / "0.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "imgs" / "b").mkdir()
    (tmp_path / "imgs" / "b" / "1.png").write_bytes(b"garbage")
    assert "1.png" in _error(tmp_path / "imgs", "cannot read image")
    folder = tmp_path / "mnist" / "raw"
    _idx(folder / "train-images-idx3-ubyte", np.zeros((4, 2, 2)))
    _idx(folder / "train-labels-idx1-ubyte", np.zeros(3))
    _error(tmp_path / "mnist", "missing idx file")
    _idx(folder / "t10k-images-idx3-ubyte", np.zeros((2, 2, 2)))
    _idx(folder / "t10k-labels-idx1-ubyte", np.zeros(2))
    _error(tmp_path / "mnist", "4 samples but 'labels' has 3")
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x04\x01")
    _error(tmp_path / "mnist", "holds 1")
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x12\x34\x08\x01")
    _error(tmp_path / "mnist", "bad magic")
