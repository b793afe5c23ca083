"""Patient context: how each lesion compares with the same patient's other lesions ("ugly duckling" sign).

A naevus that looks unlike the patient's other naevi deserves a closer look even when it looks harmless on
its own. The model's embedding gives "looks like": the ugly-duckling score of a lesion is its mean cosine
distance to the patient's other lesions, divided by the mean distance among those others, so 1 means "as
different as the others are from each other" and larger means it stands out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_LESIONS = 3  # with two lesions each is equally far from the other: nobody stands out


@dataclass(frozen=True)
class LesionContext:
    key: int                  # whatever identifies the lesion to the caller (a case id)
    ugly_duckling: float | None
    rank: int | None          # 1 = the most different lesion of this patient


def ugly_duckling_scores(keys: list[int], embeddings: np.ndarray) -> list[LesionContext]:
    """keys[i] ↔ embeddings[i] (L2-normalised rows). Scores are None when the patient has too few lesions."""
    n = len(keys)
    if n < MIN_LESIONS:
        return [LesionContext(k, None, None) for k in keys]
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    distance = 1.0 - unit @ unit.T
    np.fill_diagonal(distance, 0.0)
    scores = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        to_others = distance[i, others].mean()
        among_others = distance[np.ix_(others, others)].sum() / max(len(others) * (len(others) - 1), 1)
        scores.append(float(to_others / max(among_others, 1e-6)))
    ranks = np.argsort(np.argsort(-np.asarray(scores))) + 1
    return [LesionContext(k, s, int(r)) for k, s, r in zip(keys, scores, ranks, strict=True)]
