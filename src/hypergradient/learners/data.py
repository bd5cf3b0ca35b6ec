"""Datasets that ship inside packages (no download): scikit-learn's digits."""

from __future__ import annotations

import torch


def digits(seed: int = 0, n_train: int = 1000, n_val: int = 400, dtype=torch.float32):
    """scikit-learn's 8×8 digits (1797 images), pixels scaled to [0, 1], split by a seeded permutation
    into train / validation / test (the rest). Returns three (X, y) pairs."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover
        raise ImportError("the digits data set needs scikit-learn: pip install 'hypergradient[experiments]'") from e
    d = load_digits()
    X = torch.tensor(d.data, dtype=dtype) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    X, y = X[perm], y[perm]
    a, b = n_train, n_train + n_val
    return (X[:a], y[:a]), (X[a:b], y[a:b]), (X[b:], y[b:])


def minibatches(X, y, batch_size: int, steps: int, seed: int = 0):
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
