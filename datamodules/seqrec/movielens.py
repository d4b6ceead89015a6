"""MovieLens-100K and MovieLens-1M as time-ordered per-user sequences (every rating is an interaction,
as in SASRec and the HSTU repository; no rating threshold).

MovieLens-100K's item side information (`item_features=True`), from RecBole's `ml-100k.item`: fields `genre` (the
19 genres, multi-valued, one slot per genre an item has, up to 6) and `release_year` (5-year buckets, "1995-1999";
no token where the year is unknown); text = the movie title alone ("Toy Story"), embedded by `text_encoder`
(genres and year have tokens of their own, so they are not repeated in the text)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.seqrec.base import ItemMetadata, SeqRecDataModule
from datamodules.tables import read_table

ML100K = RemoteFile(
    names=("ml-100k.inter.gz", "ml-100k.inter", "u.data"),
    url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    checksums={
        "ml-100k.inter.gz": "sha256:06eca95a6d4ac85eca358bc55ee4c8a9564374c65c8a458eb37208933eb5ff09",
        "ml-100k.zip": "md5:0e33842e24a9c977be4e0107933c0723",  # the digest GroupLens publishes
    },
    download_as="ml-100k.zip",
    extract="ml-100k/u.data",
)

ML100K_ITEMS = RemoteFile(names=("ml-100k.item.gz", "ml-100k.item"), checksums={
    "ml-100k.item.gz": "sha256:ee820a31f81c093c2bd614e4a3169036d964096afbc5879ca5c0c044a4e8eeaf"})
YEAR_BUCKET = 5  # years per release-year bucket

ID_TIME = ("user_id", "item_id", "timestamp")  # every interaction needs all three, as numbers

ML1M = RemoteFile(
    names=("ml-1m_seq.csv.gz", "ml-1m_seq.csv", "ratings.dat"),
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    checksums={"ml-1m_seq.csv.gz": "sha256:a5dd1ce65338bbcc68c7b98e56f252a3e9731aefee4a2063dd3daba1612d1022",
               "ml-1m.zip": "md5:c4d9eecfca2ab87c1945afe126590906"},
    download_as="ml-1m.zip",
    extract="ml-1m/ratings.dat",
)


@register_dataset("ml-100k", family="seqrec")
class MovieLens100K(SeqRecDataModule):
    """Reads RecBole's atomic `ml-100k.inter` (gzipped or not) or GroupLens' `u.data`; both carry timestamps."""

    folder = "movielens-100k"

    def source_file(self) -> Path:
        return require_file(self.dataset_dir, ML100K)

    def load_interactions(self, path: Path) -> dict[str, np.ndarray]:
        if path.name == "u.data":
            frame = read_table(path, ["user_id", "item_id", "timestamp"], sep="\t", numeric=ID_TIME,
                               names=["user_id", "item_id", "rating", "timestamp"])
        else:
            frame = read_table(path, ["user_id", "item_id", "timestamp"], atomic=True, sep="\t", numeric=ID_TIME)
        return {"user": frame["user_id"].to_numpy(), "item": frame["item_id"].to_numpy(),
                "time": frame["timestamp"].to_numpy().astype(np.int64)}

    def metadata_file(self) -> Path:
        return require_file(self.dataset_dir, ML100K_ITEMS)

    def metadata_identity(self) -> str:
        path = self.metadata_file()
        return hashlib.sha1(f"{path.resolve()}|{path.stat().st_size}|{path.stat().st_mtime_ns}".encode()).hexdigest()

    def item_metadata(self, raw_item_ids: np.ndarray) -> ItemMetadata:
        table = pd.read_csv(self.metadata_file(), sep="\t", dtype=str, keep_default_na=False)
        table.columns = [c.split(":", 1)[0] for c in table.columns]
        table = table.set_index(table["item_id"].astype(int))
        known = np.isin(raw_item_ids, table.index.to_numpy())
        if not known.any():
            raise DataError(f"{self.metadata_file()} describes none of the interactions' items")
        rows = table[~table.index.duplicated()].reindex(raw_item_ids, fill_value="")
        years = pd.to_numeric(rows["release_year"], errors="coerce")
        buckets = (years // YEAR_BUCKET * YEAR_BUCKET).astype("Int64")
        return ItemMetadata(
            fields={"genre": [g.split() for g in rows["class"]],
                    "release_year": [[] if pd.isna(b) else [f"{b}-{b + YEAR_BUCKET - 1}"] for b in buckets]},
            texts=list(rows["movie_title"]),
            text_source="the movie title from ml-100k.item (e.g. 'Toy Story'), without year or genres",
            notes={"items_missing_from_item_file": int((~known).sum())})


@register_dataset("ml-1m", family="seqrec")
class MovieLens1M(SeqRecDataModule):
    """Reads `ml-1m_seq.csv(.gz)` (user_id, seq_idx, movie_id: all 1,000,209 interactions in time order, no
    timestamps; see shared/data/movielens-1m/SOURCE.md) or GroupLens' `ratings.dat` (with timestamps).
    With the sequence file, time-aware models have no time to read (`has_time` is False after setup)."""

    folder = "movielens-1m"

    def source_file(self) -> Path:
        return require_file(self.dataset_dir, ML1M)

    def load_interactions(self, path: Path) -> dict[str, np.ndarray]:
        if path.name == "ratings.dat":
            frame = read_table(path, ["user_id", "movie_id", "timestamp"], sep="::", engine="python",
                               names=["user_id", "movie_id", "rating", "timestamp"],
                               numeric=("user_id", "movie_id", "timestamp"))
            return {"user": frame["user_id"].to_numpy(), "item": frame["movie_id"].to_numpy(),
                    "time": frame["timestamp"].to_numpy().astype(np.int64)}
        frame = read_table(path, ["user_id", "seq_idx", "movie_id"], numeric=("user_id", "seq_idx", "movie_id")
                           ).sort_values(["user_id", "seq_idx"], kind="stable")
        return {"user": frame["user_id"].to_numpy(), "item": frame["movie_id"].to_numpy()}
