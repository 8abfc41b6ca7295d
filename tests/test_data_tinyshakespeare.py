"""The tinyshakespeare data source on a text each test writes, language-model metrics and training."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwsearch import spaces
from hwsearch.data import load_data
from hwsearch.datasets.tinyshakespeare import PIECES, TextDataset
from hwsearch.errors import DataError, UnknownName
from hwsearch.lm_eval import lm_score, split_score
from hwsearch.train import Recipe, train_and_evaluate

TEXT = "".join(f"Line {i}: to be, or not to be; that is the question? {'xyz'[i % 3]}\n" for i in range(80))


pytestmark = pytest.mark.usefixtures("isolated_data", "one_torch_thread")


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _text_of(data: TextDataset, x: torch.Tensor) -> str:
    return data.decode(x)


def test_vocabulary_is_the_sorted_characters_and_windows_are_shifted_by_one(text_file):
    data = load_data(f"tinyshakespeare:{text_file}?context=16", seed=0)
    assert isinstance(data, TextDataset)
    assert data.vocab == tuple(sorted(set(TEXT))) and data.num_classes == len(set(TEXT))
    assert data.input_shape == (1, 1, 16) and data.x_train.shape[1:] == (1, 1, 16)
    assert data.x_train.dtype == torch.int64 and data.y_train.shape == (len(data.x_train), 16)
    for x, y in zip(data.x_train[:20], data.y_train[:20], strict=True):
        window = _text_of(data, x) + data.decode(y[-1:])
        assert window in TEXT
        assert torch.equal(x.reshape(-1)[1:], y[:-1])


def test_the_split_is_contiguous_pieces_chosen_by_the_seed_and_repeatable(text_file):
    piece = len(TEXT) // PIECES
    per_piece = (piece - 1) // 16
    a = load_data(f"tinyshakespeare:{text_file}?context=16", seed=0)
    assert a.sizes == {"train": (PIECES - 2) * per_piece, "val": per_piece, "test": per_piece}
    # val and test are each one run of windows read straight through the text, in different places
    spans = []
    for split in ("val", "test"):
        x, y = a.split(split)
        run = "".join(_text_of(a, w) for w in x) + a.decode(y[-1][-1:])
        assert TEXT.count(run) == 1
        spans.append(range(TEXT.index(run), TEXT.index(run) + len(run)))
    assert not set(spans[0]) & set(spans[1])
    again = load_data(f"tinyshakespeare:{text_file}?context=16", seed=0)
    assert torch.equal(a.x_val, again.x_val) and torch.equal(a.x_train, again.x_train)
    others = [load_data(f"tinyshakespeare:{text_file}?context=16", seed=s).x_val for s in (1, 2, 3)]
    assert any(not torch.equal(a.x_val, o) for o in others)


def test_a_stride_smaller_than_the_context_overlaps_windows(text_file):
    plain = load_data(f"tinyshakespeare:{text_file}?context=16", seed=0)
    dense = load_data(f"tinyshakespeare:{text_file}?context=16&stride=4", seed=0)
    assert len(dense.y_train) > 3 * len(plain.y_train)
    assert torch.equal(dense.x_train[0].reshape(-1)[4:], dense.x_train[1].reshape(-1)[:-4])


def test_a_folder_is_searched_for_input_txt_and_hwsearch_data_for_tinyshakespeare(tmp_path, monkeypatch):
    (tmp_path / "data" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "data" / "tinyshakespeare" / "input.txt").write_text(TEXT, encoding="utf-8")
    found = load_data("tinyshakespeare?context=8", seed=0)
    assert found.context == 8 and found.vocab == tuple(sorted(set(TEXT)))
    assert torch.equal(load_data(f"tinyshakespeare:{tmp_path / 'data'}?context=8").x_train, found.x_train)


def test_a_missing_copy_is_one_data_error_line_saying_where_and_what(tmp_path):
    with pytest.raises(DataError) as e:
        load_data("tinyshakespeare")
    message = str(e.value)
    assert "\n" not in message
    assert str(tmp_path / "data" / "tinyshakespeare") in message and "input.txt" in message
    assert "HWSEARCH_DATA" in message and "tinyshakespeare:PATH" in message


@pytest.mark.parametrize("source, match", [
    ("tinyshakespeare:{f}?context=0", "positive integer"),
    ("tinyshakespeare:{f}?window=8", "unknown"),
    ("tinyshakespeare:{f}?context=600", "too short"),
    ("tinyshakespeare:{d}/nowhere", "neither"),
])
def test_bad_options_and_paths_are_data_errors(text_file, tmp_path, source, match):
    with pytest.raises(DataError, match=match):
        load_data(source.format(f=text_file, d=tmp_path))


def test_another_resolution_is_refused_and_the_same_one_is_the_data_set(text_file):
    data = load_data(f"tinyshakespeare:{text_file}?context=16")
    assert data.at_resolution(16) is data
    with pytest.raises(DataError, match="context=32"):
        data.at_resolution(32)


def test_lm_score_is_the_mean_cross_entropy_per_token_and_perplexity_its_exp(text_file):
    data = load_data(f"tinyshakespeare:{text_file}?context=16", seed=0)
    space = spaces.get("gpt", num_classes=data.num_classes, context=16)
    torch.manual_seed(0)
    model = space.build(space.reference("smallest"))
    score = split_score(model, data, "val")
    with torch.no_grad():
        logits = model(data.x_val)
    want = F.cross_entropy(logits.reshape(-1, data.num_classes), data.y_val.reshape(-1)).item()
    assert score.loss == pytest.approx(want, rel=1e-5)
    assert score.perplexity == pytest.approx(math.exp(score.loss))
    assert score.tokens == data.y_val.numel()
    assert lm_score(model, data.x_val, data.y_val, batch_size=3).loss == pytest.approx(score.loss, rel=1e-9)
    assert set(score.to_dict("val_")) == {"val_loss", "val_perplexity"}


def test_a_gpt_trains_on_the_text_through_the_project_trainer(text_file):
    data = load_data(f"tinyshakespeare:{text_file}?context=16", seed=0)
    space = spaces.get("gpt", num_classes=data.num_classes, context=16)
    torch.manual_seed(0)
    model = space.build(space.reference("smallest"))
    before = split_score(model, data, "val").loss
    recipe = Recipe(epochs=3, batch_size=16, lr=3e-3, label_smoothing=0.0, warmup_epochs=0.0)
    result = train_and_evaluate(model, data, recipe=recipe, seed=0)
    after = split_score(model, data, "val").loss
    assert after < before - 0.5
    assert 0.0 < result.val_acc <= 1.0 and result.resolution == 16
    assert np.isfinite(result.final_loss)


def test_an_unknown_source_name_still_lists_tinyshakespeare():
    with pytest.raises(UnknownName, match="tinyshakespeare"):
        load_data("shakespeare")
