"""The cifar10 data source on tiny copies built here: both archive forms, splits, cache, safety, augmentation."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hwsearch.augment import CropFlip, crop_flip
from hwsearch.data import load_data
from hwsearch.datasets import cifar10
from hwsearch.datasets.safe_pickle import load_arrays
from hwsearch.errors import DataError

TRAIN_PER_CLASS_PER_BATCH = 4   # 20 training images per class in all
TEST_PER_CLASS = 3
SMALL = "?val_per_class=2"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own cache, no data folder, no download opt-in, and no network."""
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HWSEARCH_DATA", raising=False)
    monkeypatch.delenv("HWSEARCH_ALLOW_DOWNLOAD", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


# ---- tiny copies ----------------------------------------------------------------------------------
class _Py2Pickler(pickle._Pickler):
    """Writes bytes and (ASCII) text as Python 2 strings, as the official batches, pickled by Python 2, hold them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    def save_py2_text(self, obj: str) -> None:
        self.save_py2_str(obj.encode("ascii"))

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_text


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 2 names its reconstructor numpy._core; the official files (numpy 1) name numpy.core.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def official_batches(seed: int = 0) -> dict[str, bytes]:
    """Pickled batches with the official structure; pixel [0, 0, 0] of image i is i % 256 for identification."""
    rng = np.random.default_rng(seed)
    files = {}
    for i, name in enumerate([*cifar10.TRAIN_BATCHES, "test_batch"]):
        per_class = TEST_PER_CLASS if name == "test_batch" else TRAIN_PER_CLASS_PER_BATCH
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).tolist()
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        data[:, 0] = (np.arange(len(labels)) + 40 * i) % 256
        files[name] = py2_pickle({b"batch_label": f"batch {i}".encode(), b"labels": labels, b"data": data,
                                  b"filenames": [b"x.png"] * len(labels)})
    files["batches.meta"] = py2_pickle({b"label_names": [c.encode() for c in cifar10.CLASSES],
                                        b"num_cases_per_batch": 40, b"num_vis": 3072})
    return files


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def official_archive(folder: Path, seed: int = 0, drop: tuple[str, ...] = ()) -> Path:
    files = {f"cifar-10-batches-py/{k}": v for k, v in official_batches(seed).items() if k not in drop}
    return write_tar(folder / cifar10.ARCHIVE, files)


def jpeg_files(train: int = 3, test: int = 2, skip: str | None = None) -> dict[str, bytes]:
    """JPEGs of one flat colour per class (class index * 20 in every channel), so decoding can be checked."""
    from PIL import Image

    files = {}
    for split, n in (("train", train), ("test", test)):
        for c, cls in enumerate(cifar10.CLASSES):
            if cls == skip:
                continue
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), c * 20, dtype=np.uint8)).save(buf, format="JPEG", quality=95)
                files[f"{split}/{cls}/{i:04d}.jpg"] = buf.getvalue()
    return files


def jpeg_tree(folder: Path, **kw) -> Path:
    for name, data in jpeg_files(**kw).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


# ---- both forms -----------------------------------------------------------------------------------
def test_official_archive_decodes_to_uint8_images_and_labels_in_batch_order(tmp_path):
    arrays = cifar10.read_cifar10(official_archive(tmp_path))
    assert arrays.x_train.shape == (200, 3, 32, 32) and arrays.x_train.dtype == np.uint8
    assert arrays.x_test.shape == (30, 3, 32, 32) and arrays.y_test.dtype == np.int64
    assert arrays.class_names == cifar10.CLASSES
    assert np.bincount(arrays.y_train).tolist() == [20] * 10
    # data_batch_1 comes first and keeps its order: image ids 0..39 in pixel [0, 0, 0]
    assert arrays.x_train[:40, 0, 0, 0].tolist() == list(range(40))


def test_extracted_batches_folder_reads_the_same_as_the_archive(tmp_path):
    folder = tmp_path / cifar10.BATCHES_DIR
    folder.mkdir()
    for name, data in official_batches().items():
        (folder / name).write_bytes(data)
    a = cifar10.read_cifar10(official_archive(tmp_path))
    b = cifar10.read_cifar10(folder)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)


def test_jpeg_tree_and_tarball_decode_to_the_same_images_with_labels_in_class_order(tmp_path):
    tree = cifar10.read_cifar10(jpeg_tree(tmp_path / "tree"))
    tarball = cifar10.read_cifar10(write_tar(tmp_path / cifar10.JPEG_ARCHIVE, jpeg_files()))
    assert tree.x_train.shape == (30, 3, 32, 32) and tree.x_test.shape == (20, 3, 32, 32)
    assert tree.y_train.tolist() == [c for c in range(10) for _ in range(3)]
    assert np.array_equal(tree.x_train, tarball.x_train) and np.array_equal(tree.y_test, tarball.y_test)
    # each image is its class's flat colour, up to JPEG error
    expected = (tree.y_train * 20)[:, None, None, None]
    assert np.abs(tree.x_train.astype(int) - expected).max() <= 2


def test_source_string_finds_a_copy_under_hwsearch_data(tmp_path, monkeypatch):
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    write_tar(tmp_path / "data" / "cifar10" / cifar10.JPEG_ARCHIVE, jpeg_files(train=4))
    monkeypatch.setenv("HWSEARCH_DATA", str(tmp_path / "data"))
    d = load_data("cifar10" + SMALL)
    assert d.sizes == {"train": 20, "val": 20, "test": 20}
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10 and d.class_names == cifar10.CLASSES


# ---- splits ---------------------------------------------------------------------------------------
def test_validation_is_stratified_out_of_the_training_split_and_the_test_split_is_untouched(tmp_path):
    path = official_archive(tmp_path)
    arrays = cifar10.read_cifar10(path)
    d = load_data(f"cifar10:{path}?val_per_class=3", seed=0)
    assert d.sizes == {"train": 170, "val": 30, "test": 30}
    assert torch.bincount(d.y_val).tolist() == [3] * 10
    assert torch.equal(d.y_test, torch.from_numpy(arrays.y_test))
    # the test images are the published ones in their order: one affine map per channel (the
    # standardisation) takes the raw test pixels onto them exactly
    raw = arrays.x_test[:, 0].reshape(-1).astype(np.float64)
    slope, offset = np.polyfit(raw, d.x_test[:, 0].reshape(-1).double().numpy(), 1)
    assert np.abs(slope * raw + offset - d.x_test[:, 0].reshape(-1).numpy()).max() < 1e-4
    # the same map undoes train and val: image ids (pixel [0, 0, 0]) split 0..199 between them
    ids = {s: np.round((d.split(s)[0][:, 0, 0, 0].double().numpy() - offset) / slope).astype(int)
           for s in ("train", "val")}
    assert sorted(ids["train"].tolist() + ids["val"].tolist()) == list(range(200))


def test_training_split_is_standardised_per_channel(tmp_path):
    d = load_data(f"cifar10:{official_archive(tmp_path)}{SMALL}")
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(d.x_train.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-3)


def test_same_data_seed_gives_the_same_split_and_another_seed_a_different_one(tmp_path):
    source = f"cifar10:{official_archive(tmp_path)}{SMALL}"
    a, b, c = load_data(source, seed=1), load_data(source, seed=1), load_data(source, seed=2)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_val, c.x_val)
    assert torch.equal(a.y_test, c.y_test)


def test_train_subset_is_a_stratified_subset_of_what_validation_leaves(tmp_path):
    path = official_archive(tmp_path)
    full = load_data(f"cifar10:{path}{SMALL}", seed=0)
    part = load_data(f"cifar10:{path}{SMALL}&train_subset=50", seed=0)
    assert part.sizes == {"train": 50, "val": 20, "test": 30}
    assert torch.bincount(part.y_train).tolist() == [5] * 10
    assert torch.equal(part.y_val, full.y_val)


def test_default_validation_of_500_per_class_needs_more_images_than_a_tiny_copy_has(tmp_path):
    with pytest.raises(DataError, match="lower val_per_class"):
        load_data(f"cifar10:{official_archive(tmp_path)}")


# ---- cache ----------------------------------------------------------------------------------------
def test_second_load_reads_the_decoded_cache_without_decoding(tmp_path, monkeypatch):
    path = official_archive(tmp_path)
    first = cifar10.load_cifar10(path)
    assert cifar10.cache_path(path).is_file()

    def no_decoding(copy):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cifar10, "read_cifar10", no_decoding)
    again = cifar10.load_cifar10(path)
    assert np.array_equal(first.x_train, again.x_train) and again.class_names == cifar10.CLASSES
    with np.load(cifar10.cache_path(path), allow_pickle=False) as f:  # plain arrays, no pickle
        assert f["x_train"].dtype == np.uint8 and f["y_train"].dtype == np.int64


def test_a_changed_copy_is_decoded_again_not_served_stale(tmp_path):
    path = official_archive(tmp_path, seed=0)
    old = cifar10.load_cifar10(path)
    (tmp_path / "other").mkdir()
    os.replace(official_archive(tmp_path / "other", seed=1), path)  # another copy at the same path
    new = cifar10.load_cifar10(path)
    assert not np.array_equal(old.x_train, new.x_train)
    assert np.array_equal(new.x_train, cifar10.read_cifar10(path).x_train)


def test_an_unreadable_cache_is_decoded_again_with_a_warning(tmp_path):
    path = official_archive(tmp_path)
    cifar10.load_cifar10(path)
    cifar10.cache_path(path).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="decoding"):
        arrays = cifar10.load_cifar10(path)
    assert arrays.x_train.shape == (200, 3, 32, 32)


# ---- pickles are never trusted --------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_a_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({b"data": _Evil(marker)}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_arrays(payload)
    assert not marker.exists()
    assert load_arrays(pickle.dumps(np.arange(3), protocol=4)).tolist() == [0, 1, 2]


def test_a_malicious_batch_in_an_archive_is_a_one_line_data_error(tmp_path):
    marker = tmp_path / "ran"
    files = {f"cifar-10-batches-py/{k}": v for k, v in official_batches().items()}
    files["cifar-10-batches-py/data_batch_3"] = pickle.dumps({b"data": _Evil(marker)}, protocol=2)
    with pytest.raises(DataError, match="refusing to load global") as info:
        cifar10.read_cifar10(write_tar(tmp_path / cifar10.ARCHIVE, files))
    assert "\n" not in str(info.value) and not marker.exists()


# ---- broken inputs --------------------------------------------------------------------------------
def _broken(tmp_path: Path, case: str) -> str:
    if case == "truncated tar":
        path = official_archive(tmp_path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return str(path)
    if case == "wrong array shape":
        files = {f"cifar-10-batches-py/{k}": v for k, v in official_batches().items()}
        files["cifar-10-batches-py/test_batch"] = py2_pickle({b"data": np.zeros((4, 100), np.uint8),
                                                              b"labels": [0, 1, 2, 3]})
        return str(write_tar(tmp_path / cifar10.ARCHIVE, files))
    if case == "missing test batch":
        return str(official_archive(tmp_path, drop=("test_batch",)))
    if case == "missing test folder":
        return str(write_tar(tmp_path / cifar10.JPEG_ARCHIVE, jpeg_files(test=0)))
    if case == "missing class folder":
        return str(jpeg_tree(tmp_path / "tree", skip="frog"))
    if case == "not a cifar copy":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty")
    raise AssertionError(case)


@pytest.mark.parametrize("case, message", [
    ("truncated tar", "truncated or not a tar archive"),
    ("wrong array shape", "must be a uint8 array of shape (N, 3072)"),
    ("missing test batch", "lacks test_batch"),
    ("missing test folder", "test/ lacks images of class folder(s) airplane"),
    ("missing class folder", "lacks images of class folder(s) frog"),
    ("not a cifar copy", "is not a CIFAR-10 copy"),
])
def test_broken_copies_are_one_line_data_errors(tmp_path, case, message):
    with pytest.raises(DataError) as info:
        load_data(f"cifar10:{_broken(tmp_path, case)}{SMALL}")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("options, message", [
    ("?train_subset=0", "must be a positive integer"),
    ("?train_subset=1000", "train_subset=1000 must be between"),
    ("?colour=grey", "option 'colour=grey' is unknown"),
    ("?augment=mixup", "must be crop-flip or none"),
])
def test_bad_options_are_one_line_data_errors(tmp_path, options, message):
    source = f"cifar10:{official_archive(tmp_path)}{options}" + ("&val_per_class=2" if "train_subset" in options else "")
    with pytest.raises(DataError) as info:
        load_data(source)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_nothing_found_says_where_it_looked_and_what_to_put_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEARCH_DATA", str(tmp_path / "mydata"))
    with pytest.raises(DataError) as info:
        load_data("cifar10")
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "mydata") in msg and str(tmp_path / "cache" / "datasets") in msg
    assert cifar10.ARCHIVE in msg and cifar10.JPEG_ARCHIVE in msg and "hwsearch data download cifar10" in msg


def test_download_only_with_the_opt_in_and_only_when_the_md5_matches(tmp_path, monkeypatch):
    (tmp_path / "server").mkdir()
    body = official_archive(tmp_path / "server").read_bytes()  # what the fake server sends
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: io.BytesIO(body))
    monkeypatch.setenv("HWSEARCH_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="no CIFAR-10 copy found"):
        load_data("cifar10" + SMALL)  # no opt-in: the fake server is never asked
    monkeypatch.setenv("HWSEARCH_ALLOW_DOWNLOAD", "1")
    with pytest.raises(DataError, match="not the published"):
        load_data("cifar10" + SMALL)
    assert not (tmp_path / "data" / cifar10.ARCHIVE).exists()
    monkeypatch.setattr(cifar10, "MD5", hashlib.md5(body).hexdigest())
    d = load_data("cifar10" + SMALL)
    assert (tmp_path / "data" / cifar10.ARCHIVE).read_bytes() == body and d.sizes["test"] == 30


# ---- augmentation ---------------------------------------------------------------------------------
def _is_crop_of_padded(out: torch.Tensor, x: torch.Tensor, pad: int) -> bool:
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[-2:]
    return any(torch.equal(out, padded[:, dy:dy + h, dx:dx + w])
               for dy in range(2 * pad + 1) for dx in range(2 * pad + 1))


def test_crop_keeps_the_shape_and_every_output_is_a_crop_of_the_padded_input():
    x = torch.randn(16, 3, 12, 12)
    out = crop_flip(x, 3, torch.Generator().manual_seed(0), flip=False)
    assert out.shape == x.shape
    assert all(_is_crop_of_padded(out[i], x[i], 3) for i in range(len(x)))
    assert sum(not torch.equal(out[i], x[i]) for i in range(len(x))) > 8  # crops really move


def test_flip_mirrors_about_half_the_images_and_leaves_the_rest():
    x = torch.randn(64, 3, 8, 8)
    out = crop_flip(x, 0, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 16 < sum(flipped) < 48


def test_padding_uses_the_fill_value_of_each_channel():
    x = torch.zeros(32, 2, 8, 8)
    out = CropFlip(padding_share=0.5, fill=(5.0, -3.0))(x, torch.Generator().manual_seed(0))
    assert set(out[:, 0].unique().tolist()) <= {0.0, 5.0} and set(out[:, 1].unique().tolist()) <= {0.0, -3.0}
    assert (out[:, 0] == 5.0).any()


def test_augmentation_is_repeatable_under_a_seed():
    x = torch.randn(8, 3, 32, 32)
    a = CropFlip()(x, torch.Generator().manual_seed(3))
    b = CropFlip()(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, CropFlip()(x, torch.Generator().manual_seed(4)))


def test_cifar10_turns_crop_flip_on_with_black_borders_and_augment_none_turns_it_off(tmp_path):
    from hwsearch.train import Recipe, augment_batch

    path = official_archive(tmp_path)
    d = load_data(f"cifar10:{path}{SMALL}")
    assert isinstance(d.augment, CropFlip) and d.augment.padding(32) == 4
    # borders are black (raw 0) in standardised units, well below the mean of these uniform pixels
    assert all(f < -1 for f in d.augment.fill)
    xb = d.x_train[:8]
    assert torch.equal(augment_batch(xb, d, Recipe(), torch.Generator().manual_seed(0)),
                       d.augment(xb, torch.Generator().manual_seed(0)))
    off = load_data(f"cifar10:{path}{SMALL}&augment=none")
    assert off.augment is None and off.at_resolution(16).augment is None
    assert d.at_resolution(16).augment == d.augment


def test_digits_batches_still_get_the_recipes_shift():
    from hwsearch.train import Recipe, _shift, augment_batch

    d = load_data("digits")
    assert d.augment is None
    xb = d.x_train[:16]
    assert torch.equal(augment_batch(xb, d, Recipe(), torch.Generator().manual_seed(0)),
                       _shift(xb, Recipe().augment_shift, torch.Generator().manual_seed(0)))


# ---- command line ---------------------------------------------------------------------------------
def test_cli_data_show_prints_the_splits_of_a_copy(tmp_path):
    from hwsearch.cli import app

    result = CliRunner().invoke(app, ["data", "show", f"cifar10:{official_archive(tmp_path)}{SMALL}"])
    assert result.exit_code == 0, result.output
    assert "train 180, val 20, test 30" in result.stdout and "CropFlip" in result.stdout


def test_cli_missing_copy_exits_2_with_one_line_on_stderr_and_no_traceback(tmp_path, monkeypatch, capsys):
    from hwsearch import cli

    missing = tmp_path / "nowhere.tar.gz"
    # CliRunner runs the app, whose errors propagate: the one-line exit-2 handler lives in cli.main.
    result = CliRunner().invoke(cli.app, ["data", "show", f"cifar10:{missing}"])
    assert isinstance(result.exception, DataError)
    monkeypatch.setattr(sys, "argv", ["hwsearch", "data", "show", f"cifar10:{missing}"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
