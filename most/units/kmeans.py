"""K-means over frame features: fitting (scikit-learn mini-batch) and fast assignment (torch).

Fitting happens once per run on a sample of training frames; assignment runs on every frame of
the corpus, so it is a single matmul + argmin in torch rather than a scikit-learn call.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans


def fit_kmeans(frames: np.ndarray, k: int, seed: int) -> torch.Tensor:
    """``(N, D)`` float frames -> ``(k, D)`` float32 centroids. Deterministic given ``seed``.

    Centroids are sorted by their first feature dimension so that ids do not depend on the
    arbitrary order k-means happened to produce (for log-mel this is low-frequency energy,
    which also makes unit ids loosely ordered from silence to voiced sounds).
    """
    if frames.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} frames, got {frames.shape[0]}")
    km = MiniBatchKMeans(
        n_clusters=k,
        random_state=seed,
        batch_size=max(4096, 4 * k),
        n_init=3,
        max_iter=100,
        max_no_improvement=20,
        reassignment_ratio=0.01,
    )
    km.fit(frames.astype(np.float32, copy=False))
    centroids = torch.from_numpy(km.cluster_centers_.astype(np.float32))
    order = torch.argsort(centroids[:, 0], stable=True)
    return centroids[order].contiguous()


def assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(T, D)`` features, ``(K, D)`` centroids -> ``(T,)`` long ids of the nearest centroid."""
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the ||x||^2 term does not change the argmin.
    dist = centroids.pow(2).sum(1) - 2.0 * features.float() @ centroids.T
    return dist.argmin(dim=1)
