"""MovieLens-100K and MovieLens-1M for reranking: interactions through the seqrec loader of the same files (so the
families see the same time-ordered sequences), genres as the diversity attribute, release year for the fairness
split. ML-100K's genres and years come from RecBole's `ml-100k.item`; ML-1M's from `movielens-1m-meta/movies.dat`
(the year is the one in the title's parentheses; that copy lacks 2 of the 3,706 rated movies, which get no title,
no genre and an unknown year)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.rerank.base import Catalogue, RerankDataModule
from datamodules.seqrec.movielens import ML100K_ITEMS, MovieLens100K, MovieLens1M

ML1M_MOVIES = RemoteFile(names=("movies.dat",), checksums={
    "movies.dat": "sha256:ad22fd112a753c753925eea3a7a46b7ed82b1273fc4f47f798ee52ec0c28576b"})


def _identity(*paths: Path) -> str:
    parts = [f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in paths]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def _multi_hot(genre_lists: list[list[str]]) -> tuple[list[str], np.ndarray]:
    names = sorted({g for genres in genre_lists for g in genres})
    column = {g: j for j, g in enumerate(names)}
    matrix = np.zeros((len(genre_lists), len(names)), dtype=np.float32)
    rows = [i for i, genres in enumerate(genre_lists) for _ in genres]
    cols = [column[g] for genres in genre_lists for g in genres]
    matrix[rows, cols] = 1.0
    return names, matrix


class MovieLensRerank(RerankDataModule):
    sequence_source: type

    def metadata_file(self) -> Path:  # pragma: no cover
        raise NotImplementedError

    def item_table(self) -> pd.DataFrame:  # pragma: no cover
        """Columns title, genres (list[str]), year (float, NaN unknown), indexed by the raw item id."""
        raise NotImplementedError

    def catalogue(self) -> Catalogue:
        source = self.sequence_source(data_dir=str(self.data_dir), min_seq_len=3)
        path = source.source_file()
        sequences = source.sequences_from_interactions(source.load_interactions(path))
        table = self.item_table()
        raw = sequences["raw_item_ids"]
        if not np.isin(raw, table.index.to_numpy()).any():
            raise DataError(f"{self.metadata_file()} describes none of the interactions' items: check that the "
                            f"item file belongs to the same dataset as the interactions")
        rows = table[~table.index.duplicated()].reindex(raw)
        titles = [""] + [t if isinstance(t, str) else "" for t in rows["title"]]
        genre_lists = [[]] + [g if isinstance(g, list) else [] for g in rows["genres"]]
        names, genres = _multi_hot(genre_lists)
        years = np.concatenate([[np.nan], rows["year"].to_numpy(dtype=np.float64)])
        return Catalogue(items=sequences["items"], offsets=sequences["offsets"], titles=titles, genre_names=names,
                         genres=genres, years=years, identity=_identity(path, self.metadata_file()))


@register_dataset("rerank-ml100k", family="rerank")
class RerankML100K(MovieLensRerank):
    """MovieLens-100K (943 users, 1,682 items, 19 genres including "unknown")."""

    folder = "movielens-100k"
    sequence_source = MovieLens100K

    def metadata_file(self) -> Path:
        return require_file(self.dataset_dir, ML100K_ITEMS)

    def item_table(self) -> pd.DataFrame:
        table = pd.read_csv(self.metadata_file(), sep="\t", dtype=str, keep_default_na=False)
        table.columns = [c.split(":", 1)[0] for c in table.columns]
        return pd.DataFrame({"title": table["movie_title"].to_numpy(),
                             "genres": [g.split() for g in table["class"]],
                             "year": pd.to_numeric(table["release_year"], errors="coerce").to_numpy()},
                            index=table["item_id"].astype(int).to_numpy())


@register_dataset("rerank-ml1m", family="rerank")
class RerankML1M(MovieLensRerank):
    """MovieLens-1M (6,040 users, 3,706 rated movies, 18 genres)."""

    folder = "movielens-1m"
    sequence_source = MovieLens1M

    def metadata_file(self) -> Path:
        return require_file(self.data_dir / "movielens-1m-meta", ML1M_MOVIES)

    def item_table(self) -> pd.DataFrame:
        lines = self.metadata_file().read_text(encoding="utf-8", errors="replace").splitlines()
        table = pd.DataFrame([line.split("::") for line in lines if line], columns=["movie_id", "title", "genres"])
        years = pd.to_numeric(table["title"].str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce")
        return pd.DataFrame({"title": table["title"].to_numpy(),
                             "genres": [g.split("|") if g else [] for g in table["genres"]],
                             "year": years.to_numpy(dtype=np.float64)},
                            index=table["movie_id"].astype(int).to_numpy())
