"""Scores of "this cat is one of the breeds I know", fitted on training features: what `breed_identified` reads.

A softmax over known breeds always names one of them. Three scores of how surely a photo shows a known breed are
measured by the leave-breeds-out study (`training.recipe_search`): the maximum probability after temperature
scaling, the energy score (the temperature times the log-sum-exp of the logits) and the Mahalanobis distance of
the pooled features to the nearest breed's centre (class means, one shared covariance, shrunk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, truth: np.ndarray, grid: np.ndarray | None = None) -> float:
    """The temperature T that minimises the validation negative log-likelihood of softmax(logits / T).

    A one-parameter fit (Guo et al., 2017): a grid fine enough for two decimals, deterministic, no optimiser.
    """
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 301)) if grid is None else grid
    rows = np.arange(len(truth))

    def nll(temperature: float) -> float:
        scaled = logits / temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        return float((np.log(np.exp(scaled).sum(axis=1)) - scaled[rows, truth]).mean())

    return float(grid[int(np.argmin([nll(t) for t in grid]))])


@dataclass(frozen=True)
class Mahalanobis:
    """Class centres and the inverse of their shared covariance."""

    centres: np.ndarray  # (classes, features)
    precision: np.ndarray  # (features, features)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to each centre, (rows, classes)."""
        projected = features @ self.precision
        centre_terms = np.einsum("cf,fg,cg->c", self.centres, self.precision, self.centres)
        return (
            np.einsum("rf,rf->r", projected, features)[:, None] - 2 * projected @ self.centres.T + centre_terms[None, :]
        )

    def min_distance(self, features: np.ndarray) -> np.ndarray:
        return self.distances(features).min(axis=1)


def mahalanobis_fit(features: np.ndarray, labels: np.ndarray, classes: int, shrinkage: float = 0.1) -> Mahalanobis:
    """Centres per class and a shared covariance shrunk towards its mean variance (features outnumber photos per
    breed; without shrinkage the covariance is singular)."""
    centres = np.stack([features[labels == c].mean(axis=0) for c in range(classes)])
    centred = features - centres[labels]
    covariance = centred.T @ centred / len(features)
    dimension = covariance.shape[0]
    shrunk = (1 - shrinkage) * covariance + shrinkage * np.trace(covariance) / dimension * np.eye(dimension)
    return Mahalanobis(centres, np.linalg.inv(shrunk))
