"""Retrieval datasets: MovieLens-100K and -1M with titles and genres, Amazon Beauty with categories and brands,
and a synthetic catalogue with planted semantic clusters.

The interactions are the seqrec family's (same files, same time ordering); the item side information comes from
the dataset's item table. Text per item: MovieLens titles with their genres ("Toy Story (1995). Animation,
Children's, Comedy"); Beauty has no titles in the offline copy, so it has attributes but no text.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.retrieval.base import RetrievalDataModule
from datamodules.seqrec.movielens import MovieLens100K, MovieLens1M

ML100K_ITEMS = RemoteFile(names=("ml-100k.item.gz", "ml-100k.item"), checksums={
    "ml-100k.item.gz": "sha256:ee820a31f81c093c2bd614e4a3169036d964096afbc5879ca5c0c044a4e8eeaf"})
ML1M_MOVIES = RemoteFile(names=("movies.dat",))
BEAUTY = RemoteFile(names=("Beauty.txt",), checksums={
    "Beauty.txt": "sha256:226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"})
BEAUTY_ATTRIBUTES = RemoteFile(names=("Beauty_item2attributes.json",), checksums={
    "Beauty_item2attributes.json": "sha256:129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4"})


def _source_identity(*paths: Path) -> str:
    parts = [f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in paths]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def _rows_for(table: pd.DataFrame, raw_item_ids: np.ndarray, path: Path) -> pd.DataFrame:
    """The metadata rows of the interactions' items, in their order. Items the table lacks get empty fields (the
    datamodule counts them: `items_without_metadata`); a table that covers none of them is one clear error."""
    known = np.isin(raw_item_ids, table.index.to_numpy())
    if not known.any():
        raise DataError(f"{path} describes none of the interactions' items: check that the item file belongs to the "
                        f"same dataset as the interactions")
    return table[~table.index.duplicated()].reindex(raw_item_ids, fill_value="")


def _decade(year) -> str | None:
    try:
        return f"decade:{int(float(year)) // 10 * 10}"
    except (TypeError, ValueError):
        return None


class MovieLensRetrieval(RetrievalDataModule):
    """Interactions through the seqrec loader of the same files, so both families see the same sequences."""

    sequence_source: type

    def _source(self):
        return self.sequence_source(data_dir=str(self.data_dir), min_seq_len=3)

    def sequences(self) -> dict[str, np.ndarray]:
        source = self._source()
        return source.sequences_from_interactions(source.load_interactions(source.source_file()))

    def metadata_file(self) -> Path:
        raise NotImplementedError

    def cache_key(self) -> str:
        return f"{self.registry_name}|{_source_identity(self._source().source_file(), self.metadata_file())}"


@register_dataset("retrieval-ml100k", family="retrieval")
class RetrievalML100K(MovieLensRetrieval):
    """MovieLens-100K: text = title + genres, attributes = genres and release decade."""

    folder = "movielens-100k"
    sequence_source = MovieLens100K

    def metadata_file(self) -> Path:
        return require_file(self.dataset_dir, ML100K_ITEMS)

    def item_metadata(self, raw_item_ids):
        table = pd.read_csv(self.metadata_file(), sep="\t", dtype=str, keep_default_na=False)
        table.columns = [c.split(":", 1)[0] for c in table.columns]
        rows = _rows_for(table.set_index(table["item_id"].astype(int)), raw_item_ids, self.metadata_file())
        genres = [g.split() for g in rows["class"]]
        texts = [f"{t} ({y}). {', '.join(g)}" if t else "" for t, y, g in
                 zip(rows["movie_title"], rows["release_year"], genres)]
        attributes = [[f"genre:{x}" for x in g] + ([d] if (d := _decade(y)) else [])
                      for g, y in zip(genres, rows["release_year"])]
        return texts, attributes


@register_dataset("retrieval-ml1m", family="retrieval")
class RetrievalML1M(MovieLensRetrieval):
    """MovieLens-1M (sequences from `movielens-1m/`, titles and genres from `movielens-1m-meta/movies.dat`):
    text = title + genres, attributes = genres and release decade."""

    folder = "movielens-1m"
    sequence_source = MovieLens1M

    def metadata_file(self) -> Path:
        return require_file(self.data_dir / "movielens-1m-meta", ML1M_MOVIES)

    def item_metadata(self, raw_item_ids):
        lines = self.metadata_file().read_text(encoding="latin-1").splitlines()
        table = pd.DataFrame([line.split("::") for line in lines if line], columns=["movie_id", "title", "genres"])
        rows = _rows_for(table.set_index(table["movie_id"].astype(int)), raw_item_ids, self.metadata_file())
        genres = [g.split("|") if g else [] for g in rows["genres"]]
        years = rows["title"].str.extract(r"\((\d{4})\)\s*$")[0]
        texts = [f"{t}. {', '.join(g)}" if t else "" for t, g in zip(rows["title"], genres)]
        attributes = [[f"genre:{x}" for x in g] + ([d] if (d := _decade(y)) else []) for g, y in zip(genres, years)]
        return texts, attributes


@register_dataset("retrieval-beauty", family="retrieval")
class RetrievalBeauty(RetrievalDataModule):
    """Amazon Beauty 5-core in S3-Rec's files (`amazon-s3rec/`: item order per user and category/brand attribute
    ids). No titles ship offline, so the text modality is empty here."""

    folder = "amazon-s3rec"

    def _files(self) -> tuple[Path, Path]:
        return require_file(self.dataset_dir, BEAUTY), require_file(self.dataset_dir, BEAUTY_ATTRIBUTES)

    def cache_key(self) -> str:
        return f"{self.registry_name}|{_source_identity(*self._files())}"

    def sequences(self) -> dict[str, np.ndarray]:
        path, _ = self._files()
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        raw = [np.asarray(parts[1:], dtype=np.int64) for parts in lines]
        lengths = np.array([len(r) for r in raw])
        if (lengths < 3).any():
            raise DataError(f"{path}: {int((lengths < 3).sum())} users have fewer than 3 items")
        flat = np.concatenate(raw)
        raw_ids, index = np.unique(flat, return_inverse=True)
        return {"items": index + 1, "offsets": np.concatenate([[0], np.cumsum(lengths)]), "raw_item_ids": raw_ids}

    def item_metadata(self, raw_item_ids):
        attrs = json.loads(self._files()[1].read_text())
        return None, [[f"attr:{a}" for a in attrs.get(str(int(i)), [])] for i in raw_item_ids]


@register_dataset("synthetic-retrieval", family="retrieval")
class SyntheticRetrieval(RetrievalDataModule):
    """A catalogue with a planted two-level semantic hierarchy and false-negative structure, needing no files.

    Items fall into `num_groups` groups of `subgroups` subgroups of `items_per_subgroup` items. Each user likes one
    subgroup: with probability `p_follow` an interaction is a uniformly drawn item of that subgroup, otherwise any
    item. Item attributes name the group (always) and the subgroup (observed with probability `attribute_noise`
    flipped to a wrong one); item texts are random unit vectors around a group direction plus a smaller subgroup
    direction. Telling apart items of the liked subgroup from the other subgroups of the same group is what
    separates models; uniform negatives rarely come from the same group.
    """

    folder = "synthetic-retrieval"

    def __init__(self, data_dir: str | None = None, num_users: int = 800, num_groups: int = 30, subgroups: int = 4,
                 items_per_subgroup: int = 5, min_length: int = 6, max_length: int = 15, p_follow: float = 0.9,
                 attribute_noise: float = 0.5, text_dim: int = 16, seed: int = 0, max_len: int = 10,
                 batch_size: int = 128, eval_batch_size: int = 512, behaviour_dim: int = 8,
                 behaviour_window: int = 2, num_workers: int = 0):
        super().__init__(data_dir, max_len, batch_size, eval_batch_size, "tfidf", behaviour_dim, behaviour_window,
                         num_workers)
        self.generator_args = dict(num_users=num_users, num_groups=num_groups, subgroups=subgroups,
                                   items_per_subgroup=items_per_subgroup, min_length=min_length,
                                   max_length=max_length, p_follow=p_follow, attribute_noise=attribute_noise,
                                   text_dim=text_dim, seed=seed)

    def _prepared(self):
        if not hasattr(self, "_generated"):  # in memory: nothing is cached on disk
            self._generated = self._build()
        return self._generated

    def _build(self) -> dict[str, np.ndarray]:
        from datamodules.retrieval.base import behaviour_factors, training_targets

        a = self.generator_args
        rng = np.random.default_rng(a["seed"])
        n_sub = a["num_groups"] * a["subgroups"]
        n_items = n_sub * a["items_per_subgroup"]
        subgroup = np.repeat(np.arange(n_sub), a["items_per_subgroup"])  # of item i (0-based)
        group = subgroup // a["subgroups"]
        liked = rng.integers(0, n_sub, size=a["num_users"])
        lengths = rng.integers(a["min_length"], a["max_length"] + 1, size=a["num_users"])
        total = int(lengths.sum())
        user = np.repeat(np.arange(a["num_users"]), lengths)
        follow = rng.random(total) < a["p_follow"]
        in_liked = liked[user] * a["items_per_subgroup"] + rng.integers(0, a["items_per_subgroup"], size=total)
        items = np.where(follow, in_liked, rng.integers(0, n_items, size=total)) + 1
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        observed_sub = np.where(rng.random(n_items) < a["attribute_noise"], rng.integers(0, n_sub, n_items), subgroup)
        attributes = np.zeros((n_items + 1, a["num_groups"] + n_sub), np.float32)
        attributes[np.arange(1, n_items + 1), group] = 1.0
        attributes[np.arange(1, n_items + 1), a["num_groups"] + observed_sub] = 1.0
        group_dir = rng.normal(size=(a["num_groups"], a["text_dim"]))
        sub_dir = rng.normal(size=(n_sub, a["text_dim"]))
        text = group_dir[group] + 0.3 * sub_dir[subgroup] + 0.3 * rng.normal(size=(n_items, a["text_dim"]))
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        _, positions = training_targets(offsets)
        return {
            "items": items.astype(np.int64), "offsets": offsets.astype(np.int64),
            "raw_item_ids": np.arange(1, n_items + 1), "attributes": attributes,
            "text": np.concatenate([np.zeros((1, a["text_dim"])), text]).astype(np.float32),
            "text_encoder_used": np.array("planted"),
            "behaviour": behaviour_factors(items, offsets, n_items, self.behaviour_dim, self.behaviour_window),
            "count": np.bincount(items[positions], minlength=n_items + 1).astype(np.float32),
            "subgroup": np.concatenate([[-1], subgroup]), "group": np.concatenate([[-1], group]),
        }
