"""Every family that encodes text hashes what the encoding was computed from, not its floats: the same texts
encoded on another CPU differ in their last bits, and that must not make the data look different."""
import numpy as np
import pytest

import datamodules  # noqa: F401  (fills the registry)
import datamodules.dtr.icu_sepsis
import datamodules.mllmrec.base
import datamodules.retrieval.base
import datamodules.text as text
from contracts.registry import DATASETS

CASES = {
    "retrieval-ml100k": ({}, [datamodules.retrieval.base]),
    "mllm-beauty": ({"max_users": 300}, [datamodules.mllmrec.base]),
    "icu-sepsis": ({"num_patients": 200}, [datamodules.dtr.icu_sepsis]),
}


@pytest.mark.parametrize("dataset", list(CASES))
def test_the_data_hash_follows_the_texts_not_the_encoders_last_bits(dataset, shared_data, tmp_path, monkeypatch):
    args, modules = CASES[dataset]
    real_embed = text.embed_texts
    calls = []

    def build(cache: str, noise: float):
        def embed(texts, encoder, cache_dir, *a, **kw):
            emb, used = real_embed(texts, encoder, cache_dir, *a, **kw)
            calls.append(noise)
            return emb + np.float32(noise) * np.random.default_rng(0).standard_normal(emb.shape, np.float32), used

        for module in modules:
            monkeypatch.setattr(module, "embed_texts", embed)
        monkeypatch.setenv("PAPERBOARD_CACHE", str(tmp_path / cache))
        dm = DATASETS.get(dataset).cls(data_dir=str(shared_data), text_encoder="tfidf", **args)
        dm.prepare_data()
        dm.setup("fit")
        return dm.data_hash

    assert build("a", 0.0) == build("b", 1e-5)
    assert calls == [0.0, 1e-5]  # both tables were encoded here, the second with noise
