"""The accuracy predictor: learns a ranking, predicts vectorised, stores as JSON for one space only."""

from __future__ import annotations

import numpy as np
import pytest

from hwsearch import spaces
from hwsearch.errors import ConfigError
from hwsearch.estimators.accuracy_predictor import AccuracyPredictor, fit_and_report

SMALL = {"hidden": (64, 64), "epochs": 150}


@pytest.fixture(scope="module")
def data():
    space = spaces.get("vit", in_channels=1, resolution=8, patch_size=2)
    rng = np.random.default_rng(0)
    choices = [space.sample(rng) for _ in range(200)]
    weights = np.random.default_rng(1).normal(size=len(space.one_hot(choices[0])))
    acc = np.array([0.9 + 0.01 * float(space.one_hot(c) @ weights) for c in choices])
    return space, choices, acc


def test_predictor_ranks_held_out_choices_of_an_additive_target(data):
    space, choices, acc = data
    pred, report = fit_and_report(space, choices, acc, seed=0, **SMALL)
    assert report.n_test == 40 and report.n_train == 160
    assert report.kendall_tau > 0.8
    assert report.rmse < acc.std()


def test_vectorised_predictions_equal_one_at_a_time(data):
    space, choices, acc = data
    pred = AccuracyPredictor.fit(space, choices[:50], acc[:50], hidden=(16,), epochs=5)
    batch = pred.predict(choices[:10])
    assert batch.shape == (10,)
    assert np.allclose(batch, [pred.predict([c])[0] for c in choices[:10]], atol=1e-6)


def test_predictor_round_trips_through_json_and_refuses_another_space(data, tmp_path):
    space, choices, acc = data
    pred = AccuracyPredictor.fit(space, choices[:50], acc[:50], hidden=(16,), epochs=5)
    pred.save(tmp_path / "p.json")
    again = AccuracyPredictor.load(tmp_path / "p.json", space)
    assert np.array_equal(again.predict(choices[:20]), pred.predict(choices[:20]))
    other = spaces.get("vit", in_channels=1, resolution=8, patch_size=2, depths=[2, 3])
    with pytest.raises(ConfigError, match="other genes"):
        AccuracyPredictor.load(tmp_path / "p.json", other)


def test_too_few_pairs_is_a_config_error(data):
    space, choices, _ = data
    with pytest.raises(ConfigError, match="at least 2"):
        AccuracyPredictor.fit(space, choices[:1], [0.5])
