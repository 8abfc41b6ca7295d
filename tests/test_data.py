"""Offline data sources, seeded splits and per-resolution copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwsearch.data import load_data, names
from hwsearch.errors import DataError, UnknownName


def test_digits_split_sizes_add_up_to_1797_and_are_disjoint():
    d = load_data("digits", seed=0)
    assert sum(d.sizes.values()) == 1797
    assert d.sizes == {"train": 1167, "val": 270, "test": 360}
    assert d.num_classes == 10 and d.channels == 1 and d.resolution == 8
    rows = {split: {t.numpy().tobytes() for t in d.split(split)[0]} for split in ("train", "val", "test")}
    # digits holds a handful of exact duplicate images; disjointness is of samples, so compare counts
    assert len(rows["train"] & rows["test"]) <= 3
    assert len(rows["val"] & rows["test"]) <= 3


def test_split_indices_are_disjoint_by_construction(tmp_path):
    x = np.arange(200, dtype=np.float32).reshape(200, 1, 1, 1).repeat(4, 2).repeat(4, 3) / 200
    y = np.arange(200) % 4
    path = tmp_path / "ids.npz"
    np.savez(path, x=x, y=y)
    d = load_data(f"npz:{path}", seed=3)
    ids = {s: set(np.round(d.split(s)[0][:, 0, 0, 0].numpy(), 4).tolist()) for s in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert sum(len(v) for v in ids.values()) == 200


def test_same_seed_gives_same_split_and_other_seed_a_different_one():
    a, b, c = load_data(seed=1), load_data(seed=1), load_data(seed=2)
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_test, c.x_test)


def test_split_is_stratified_so_every_class_is_in_every_split():
    d = load_data(seed=0)
    for split in ("train", "val", "test"):
        assert set(d.split(split)[1].tolist()) == set(range(10))


def test_training_split_is_standardised():
    d = load_data(seed=0)
    assert abs(float(d.x_train.mean())) < 1e-4
    assert abs(float(d.x_train.std()) - 1) < 1e-2


def test_at_resolution_resizes_all_splits_and_caches_the_copy():
    d = load_data(seed=0)
    d32 = d.at_resolution(32)
    assert d32.input_shape == (1, 32, 32) and d32.sizes == d.sizes
    assert d.at_resolution(32) is d32
    assert d.at_resolution(8) is d
    assert torch.equal(d32.y_val, d.y_val)


def test_npz_source_accepts_nhwc_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 6, 6, 3), dtype=np.uint8)
    y = np.array(["cat", "dog"] * 20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_data(f"npz:{tmp_path / 'd.npz'}", seed=0)
    assert d.channels == 3 and d.resolution == 6 and d.num_classes == 2
    assert d.class_names == ("cat", "dog")
    assert sum(d.sizes.values()) == 40


def test_imagefolder_source_reads_one_class_per_subfolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    d = load_data(f"imagefolder:{tmp_path}", seed=0)
    assert d.num_classes == 3 and d.class_names == ("a", "b", "c")
    assert d.channels == 1 and d.resolution == 10 and sum(d.sizes.values()) == 18


@pytest.mark.parametrize("source, message", [
    ("mnist", "unknown data source 'mnist'"),
    ("npz", "needs a path"),
    ("npz:/nonexistent/file.npz", "does not exist"),
    ("imagefolder:/nonexistent", "does not exist"),
    ("digits:extra", "takes no argument"),
    ("", "non-empty"),
])
def test_bad_sources_raise_one_line_data_errors(source, message):
    with pytest.raises((DataError, UnknownName)) as info:
        load_data(source)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_npz_without_labels_or_corrupt_file_is_a_data_error(tmp_path):
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((20, 4, 4)))
    with pytest.raises(DataError, match="must hold arrays 'x' and 'y'"):
        load_data(f"npz:{tmp_path / 'nolabels.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot read"):
        load_data(f"npz:{tmp_path / 'junk.npz'}")
    np.savez(tmp_path / "rect.npz", x=np.zeros((20, 4, 5)), y=np.arange(20) % 2)
    with pytest.raises(DataError, match="square"):
        load_data(f"npz:{tmp_path / 'rect.npz'}")


def test_imagefolder_with_one_class_is_a_data_error(tmp_path):
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="at least two class"):
        load_data(f"imagefolder:{tmp_path}")


def test_registry_lists_the_three_builtin_sources():
    assert {"digits", "npz", "imagefolder"} <= set(names())

