"""Datasets that ship inside packages (no download): scikit-learn's digits, and MNIST-1D generated
locally (:func:`mnist1d`, from ``mnist1d.data.make_dataset``; never its downloading ``get_dataset``).

One loader, three forms:

* :func:`digits_arrays` — the raw (X, y) (pixels 0..16 in float64, labels), cached in the temp folder
  so that fresh processes (the benchmarks' peak-RSS cells) need not import scikit-learn (seconds each);
* :func:`digits` — train / validation / test splits of a seeded permutation (the demo, the tests);
* :func:`digits_batches` — fixed training batches and one validation batch of the same permutation
  (the benchmarks).

Both split forms scale the pixels to [0, 1] and shuffle with ``torch.randperm`` from
``torch.Generator().manual_seed(seed)``.
"""

from __future__ import annotations

import os
import tempfile

import torch

__all__ = ["digits_arrays", "digits", "digits_batches", "minibatches", "mnist1d", "DIGITS_CACHE"]

# one file per user: the temp folder is shared, and another user's file could neither be replaced nor trusted
_USER = os.getuid() if hasattr(os, "getuid") else 0
DIGITS_CACHE = os.path.join(tempfile.gettempdir(), f"hypergradient-digits-{_USER}.pt")
_SHAPE = (1797, 64)

_XY = tuple[torch.Tensor, torch.Tensor]  # inputs and labels


def _valid(X: object, y: object) -> bool:
    return (isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor) and tuple(X.shape) == _SHAPE
            and tuple(y.shape) == _SHAPE[:1] and X.dtype == torch.float64 and y.dtype == torch.long)


def digits_arrays(cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) of scikit-learn's digits: X (1797, 64) float64 pixels in 0..16, y (1797,) int64 labels.

    With ``cache``, read from / written to :data:`DIGITS_CACHE` (loaded with ``weights_only=True``;
    a missing, unreadable or malformed file is rebuilt from scikit-learn, an unwritable one skipped)."""
    if cache and os.path.exists(DIGITS_CACHE):
        try:
            d = torch.load(DIGITS_CACHE, weights_only=True)
            if _valid(d.get("X"), d.get("y")):
                return d["X"], d["y"]
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt
            pass
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover
        raise ImportError("the digits data set needs scikit-learn: pip install 'hypergradient[experiments]'") from e
    d = load_digits()
    X, y = torch.tensor(d.data, dtype=torch.float64), torch.tensor(d.target, dtype=torch.long)
    if cache:
        tmp = f"{DIGITS_CACHE}.{os.getpid()}"
        try:
            torch.save({"X": X, "y": y}, tmp)
            os.replace(tmp, DIGITS_CACHE)  # atomic: concurrent processes never read half a file
        except OSError:
            try:
                os.remove(tmp)
            except OSError:
                pass
    return X, y


def _shuffled(seed: int, dtype: torch.dtype) -> _XY:
    """All examples, pixels scaled to [0, 1] in ``dtype``, in the order of the seeded permutation."""
    X, y = digits_arrays()
    X = X.to(dtype) / 16.0
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return X[perm], y[perm]


def digits(seed: int = 0, n_train: int = 1000, n_val: int = 400,
           dtype: torch.dtype = torch.float32) -> tuple[_XY, _XY, _XY]:
    """scikit-learn's 8×8 digits (1797 images), pixels scaled to [0, 1], split by a seeded permutation
    into train / validation / test (the rest). Returns three (X, y) pairs."""
    X, y = _shuffled(seed, dtype)
    a, b = n_train, n_train + n_val
    return (X[:a], y[:a]), (X[a:b], y[a:b]), (X[b:], y[b:])


def digits_batches(batch: int = 128, n_batches: int = 10, dtype: torch.dtype = torch.float32,
                   seed: int = 0) -> tuple[list[_XY], _XY]:
    """The same shuffled digits as fixed batches: a list of ``n_batches`` training batches of ``batch``
    examples (to be cycled in order) and the remaining examples as one validation batch, each an
    (X, y) pair of contiguous tensors."""
    X, y = _shuffled(seed, dtype)
    n = batch * n_batches
    if n >= len(y):
        raise ValueError(f"{n_batches} batches of {batch} leave no validation data")
    train = [(X[i:i + batch].contiguous(), y[i:i + batch].contiguous()) for i in range(0, n, batch)]
    return train, (X[n:].contiguous(), y[n:].contiguous())


def minibatches(X: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int, seed: int = 0) -> list[_XY]:
    """``steps`` minibatches drawn by seeded epoch-wise permutations (a list, so steps replay)."""
    g = torch.Generator().manual_seed(seed)
    out, perm, i = [], torch.randperm(len(y), generator=g), 0
    for _ in range(steps):
        if i + batch_size > len(y):
            perm, i = torch.randperm(len(y), generator=g), 0
        idx = perm[i:i + batch_size]
        out.append((X[idx], y[idx]))
        i += batch_size
    return out


def mnist1d(seed: int = 0, n_val: int = 400, dtype: torch.dtype = torch.float32) -> tuple[_XY, _XY, _XY]:
    """MNIST-1D (Greydanus 2020; ``pip install mnist1d``): 5,000 length-40 signals of 10 classes, generated
    here by ``mnist1d.data.make_dataset`` with its default arguments (generation seed 42, so the same
    data set on every machine; nothing is downloaded). Its 4,000 training signals are split by a seeded
    permutation into train (4000 − ``n_val``) and validation (``n_val``); its 1,000 test signals are
    the test set. Inputs are standardized by the generator. Returns three (X, y) pairs."""
    try:
        import numpy as np
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise ImportError("MNIST-1D needs the mnist1d package: pip install mnist1d "
                          "(or the 'experiments' extra)") from e
    import random
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())          # seeds numpy's and random's global generators ...
    finally:
        np.random.set_state(np_state)                 # ... which are put back as they were
        random.setstate(py_state)
    X, y = torch.tensor(d["x"], dtype=dtype), torch.tensor(d["y"], dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    X, y = X[perm], y[perm]
    Xte, yte = torch.tensor(d["x_test"], dtype=dtype), torch.tensor(d["y_test"], dtype=torch.long)
    a = len(y) - n_val
    return (X[:a], y[:a]), (X[a:], y[a:]), (Xte, yte)
