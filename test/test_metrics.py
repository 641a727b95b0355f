"""depth_metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation.metrics import depth_metrics
from depth_ft_ros.evaluation.middlebury import load_motorcycle


def test_hand_computed_values() -> None:
    gt = np.array([[1.0, 2.0], [4.0, np.nan]])
    pred = np.array([[1.1, 2.0], [6.0, 3.0]])
    m = depth_metrics(pred, gt)
    assert m["n"] == 3
    assert m["absrel"] == pytest.approx((0.1 + 0.0 + 0.5) / 3)
    assert m["rmse_m"] == pytest.approx(np.sqrt((0.01 + 0.0 + 4.0) / 3))
    assert m["delta1"] == pytest.approx(2 / 3)  # 6/4 = 1.5 fails
    assert m["coverage"] == 1.0


def test_valid_mask_range_and_missing_predictions() -> None:
    gt = np.array([1.0, 2.0, 3.0, 50.0])
    pred = np.array([1.0, np.nan, 3.3, 50.0])
    m = depth_metrics(pred, gt, valid=np.array([True, True, True, False]))
    assert m["n"] == 2 and m["coverage"] == pytest.approx(2 / 3)
    assert m["absrel"] == pytest.approx(0.05)
    m = depth_metrics(pred, gt, max_depth_m=10.0)
    assert m["n"] == 2
    empty = depth_metrics(np.full(4, np.nan), gt)
    assert empty["n"] == 0 and np.isnan(empty["absrel"]) and empty["coverage"] == 0.0
    with pytest.raises(InputError):
        depth_metrics(pred, gt[:3])


def test_perfect_and_scaled_prediction_on_middlebury() -> None:
    gt = load_motorcycle().depth_m
    assert depth_metrics(gt, gt)["absrel"] == 0.0
    m = depth_metrics(gt * 1.3, gt)
    assert m["absrel"] == pytest.approx(0.3, rel=1e-5) and m["delta1"] == 0.0
    assert m["n"] == int(np.isfinite(gt).sum())
