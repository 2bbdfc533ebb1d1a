"""Mutual information between the fused image and each source (MI)."""

from __future__ import annotations

import numpy as np

from fusion_edge.metrics.inputs import as_pair, as_triplet, to_uint8_levels


def mutual_information_pair(x: np.ndarray, y: np.ndarray) -> float:
    """MI(x; y) in nats from the joint histogram of the 256 grey levels (values rounded first).

    MI = sum_{u,v} p(u, v) ln(p(u, v) / (p(u) p(v))). For 8-bit images this equals
    ``sklearn.metrics.mutual_info_score(x.ravel(), y.ravel())``, which CDDFuse's evaluator uses.
    """
    gx, gy = as_pair(x, y)
    u = to_uint8_levels(gx).ravel().astype(np.int64)
    v = to_uint8_levels(gy).ravel().astype(np.int64)
    joint = np.bincount(u * 256 + v, minlength=256 * 256).reshape(256, 256) / u.size
    pu, pv = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    outer = np.outer(pu, pv)
    mi = float(np.sum(joint[nz] * (np.log(joint[nz]) - np.log(outer[nz]))))
    return max(mi, 0.0)


def mutual_information(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """MI = MI(F; IR) + MI(F; VIS), in nats, summed over the two sources (CDDFuse's convention).

    The MATLAB fusion-metric code reports the same sum in bits; divide by ln 2 to compare.
    """
    f, a, b = as_triplet(fused, ir, vis)
    return mutual_information_pair(f, a) + mutual_information_pair(f, b)
