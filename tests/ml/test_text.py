"""The optional pretrained text encoder: its cache, its loading, and what its vectors do."""

import sys

import numpy as np
import pytest
import torch

from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.text import (TextEncoderError, embed_products, load_encoder, product_text,
                               text_keys)
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import ItemAttributes

from .test_coldstart import _baskets, _teapot_orders
from .tiny_encoder import build_tiny_encoder


class CountingEncoder:
    """Embeds a text as its length and first letter; counts what it was asked."""

    def __init__(self, name="fake/model", dim=3):
        self.name, self.dim, self.seen = name, dim, []

    def encode(self, texts):
        self.seen.extend(texts)
        return np.asarray([[len(t), ord(t[0]) if t else 0, 1.0][:self.dim] for t in texts],
                          dtype=np.float32)


def test_each_text_is_embedded_once_and_then_read_from_the_cache(tmp_path):
    enc = CountingEncoder()
    names = ["TEAPOT", "COSY", "TEAPOT"]
    first = embed_products(names, ["white", "", "white"], enc, tmp_path)
    assert enc.seen == ["TEAPOT. white", "COSY"]  # the duplicate is embedded once
    assert first.shape == (3, 3) and (first[0] == first[2]).all()
    again = embed_products(names, ["white", "", "white"], enc, tmp_path)
    assert enc.seen == ["TEAPOT. white", "COSY"] and (again == first).all()
    # a changed description is a new text: only it goes to the encoder
    embed_products(names, ["white", "", "green"], enc, tmp_path)
    assert enc.seen[2:] == ["TEAPOT. green"]
    # the key holds the model's name: another model embeds everything again
    other = CountingEncoder("other/model")
    embed_products(["COSY"], None, other, tmp_path)
    assert other.seen == ["COSY"] and len(list(tmp_path.glob("text-*.npz"))) == 2


def test_a_cache_of_another_width_or_a_damaged_one_is_rebuilt(tmp_path):
    embed_products(["TEAPOT"], None, CountingEncoder(dim=3), tmp_path)
    narrow = CountingEncoder(dim=2)  # the same name, rebuilt with another width
    out = embed_products(["TEAPOT", "COSY"], None, narrow, tmp_path)
    assert out.shape == (2, 2) and narrow.seen == ["COSY", "TEAPOT", "COSY"]
    (cache,) = tmp_path.glob("text-*.npz")
    cache.write_bytes(b"not a cache")
    again = CountingEncoder(dim=2)
    assert embed_products(["COSY"], None, again, tmp_path).shape == (1, 2)
    assert again.seen == ["COSY"]


def test_text_keys_and_product_text():
    assert product_text("  OAK   TRAY ", "solid\n oak") == "OAK TRAY. solid oak"
    assert product_text("OAK TRAY", "") == "OAK TRAY"
    assert len(product_text("X", "y" * 5000)) == 1000
    a, b = text_keys(["OAK TRAY", "OAK TRAY"], "m1"), text_keys(["OAK TRAY"], "m2")
    assert a[0] == a[1] != b[0] and len(a[0]) == 64
    with pytest.raises(ValueError, match="2 names but 1 descriptions"):
        embed_products(["A", "B"], ["x"], CountingEncoder())


def test_load_encoder_says_what_is_wrong(tmp_path, monkeypatch):
    with pytest.raises(TextEncoderError, match="TEXT_ENCODER is empty"):
        load_encoder("  ")
    with pytest.raises(TextEncoderError, match="does not exist"):
        load_encoder(str(tmp_path / "nowhere"))
    (tmp_path / "junk").mkdir()
    with pytest.raises(TextEncoderError, match="cannot load text encoder"):
        load_encoder(str(tmp_path / "junk"))
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # the extra not installed
    with pytest.raises(TextEncoderError, match=r'pip install "shop-recs\[text\]"'):
        load_encoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("encoder"))


def test_a_sentence_encoder_folder_loads_and_embeds(tiny_model, tmp_path):
    enc = load_encoder(str(tiny_model))
    vecs = embed_products(["GREEN CERAMIC TEAPOT", "OAK SERVING TRAY", "GREEN CERAMIC TEAPOT"],
                          None, enc, tmp_path)
    assert vecs.shape == (3, 32) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs[0], vecs[2]) and not np.allclose(vecs[0], vecs[1])
    # the same folder loaded again gives the same vectors (they can be cached)
    assert np.allclose(load_encoder(str(tiny_model)).encode(["OAK SERVING TRAY"])[0], vecs[1],
                       atol=1e-6)


# names that share no word: only the text vectors say the kettle is like the teapot
NAMES = ["TEAPOT", "COSY", "TRAY", "NAPKINS", "KETTLE", "BALL"]


def _text_attrs(vectors):
    return ItemAttributes(np.asarray(NAMES, dtype=object), np.asarray([""] * 6, dtype=object),
                          np.full(6, np.nan), vectors)


def _planted_vectors():
    """Product 4 (the new kettle) reads like the teapot 0; 5 like nothing bought."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 8)).astype(np.float32)
    v[4] = v[0] + 0.05 * rng.normal(size=8)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fit(attrs, seed=0):
    baskets = _teapot_orders(np.random.default_rng(seed), 300)
    cfg = BundleModelConfig(n_items=0, d_model=32, n_heads=2, n_layers=1, use_history=False,
                            use_prior=False, id_dropout=0.5, out_id_dropout=0.5)
    return BundleScorer(cfg, TrainConfig(epochs=12, time_budget_s=None, threads=1, device="cpu",
                                         batch_size=64, lr=5e-3, seed=0)).fit(baskets, attrs)


def test_a_new_product_whose_text_reads_like_a_known_one_gets_its_complement_first():
    net = _fit(_text_attrs(_planted_vectors()))
    assert net.model_config.text_dim == 8
    scores = net.for_new_products(np.array([4, 5])).score([np.array([4])])[0]
    scores[[4, 5]] = -np.inf
    assert int(np.argmax(scores)) == 1  # the kettle -> the teapot's cosy
    # without the vectors the kettle's name says nothing: the cosy is not singled out
    plain = _fit(_text_attrs(None))
    assert plain.model_config.text_dim == 0
    s0 = plain.for_new_products(np.array([4, 5])).score([np.array([4])])[0]
    s0[[4, 5]] = -np.inf
    lead = lambda s: s[1] - np.sort(s)[-2]  # noqa: E731
    assert lead(scores) > lead(s0) + 0.5


def test_text_vectors_must_match_the_catalogue():
    net = _fit(_text_attrs(_planted_vectors()))
    with pytest.raises(ValueError, match=r"text vectors must be \[6, 8\]"):
        net.model.set_features(net.model.item_words[1:], net.model.item_cat[1:],
                               net.model.item_price[1:], torch.zeros(5, 8))


def test_without_an_encoder_the_item_table_is_the_old_sum_bit_for_bit():
    baskets = _baskets([[0, 1], [2, 3], [0, 1, 2]] * 4, 6)
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, use_history=False,
                            use_prior=False)
    net = BundleScorer(cfg, TrainConfig(epochs=1, time_budget_s=None, threads=1, device="cpu",
                                        seed=0)).fit(baskets, _text_attrs(None))
    m = net.model
    words = m.item_words
    wmask = (words > 0).unsqueeze(-1).float()
    wvec = (m.word_emb(words) * wmask).sum(-2) / wmask.sum(-2).clamp(min=1.0)
    old = m.item_emb.weight + wvec + m.cat_emb(m.item_cat) + m.price_emb(m.item_price)
    assert torch.equal(m.item_table(), old)
    assert not hasattr(m, "text_proj") and "item_text" not in m.state_dict()
