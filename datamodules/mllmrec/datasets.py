"""The mllmrec datasets: Amazon Beauty (S3-Rec's 5-core files), MovieLens-1M with titles and genres, and a
synthetic catalogue with a planted topic signal (no files).

No item images exist offline for either real dataset (MLLM-MSR summarises cover images with LLaVA): item text is
all an item summariser reads here, which each dataset's `text_source` states."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.mllmrec.base import MLLMRecDataModule
from datamodules.tables import read_table

BEAUTY = RemoteFile(names=("Beauty.txt",), checksums={
    "Beauty.txt": "sha256:226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"})
BEAUTY_ATTRIBUTES = RemoteFile(names=("Beauty_item2attributes.json",), checksums={
    "Beauty_item2attributes.json": "sha256:129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4"})
ML1M = RemoteFile(names=("ml-1m_seq.csv.gz", "ml-1m_seq.csv"), checksums={
    "ml-1m_seq.csv.gz": "sha256:a5dd1ce65338bbcc68c7b98e56f252a3e9731aefee4a2063dd3daba1612d1022"})
ML1M_MOVIES = RemoteFile(names=("movies.dat",), url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                         download_as="ml-1m.zip", extract="ml-1m/movies.dat")


def file_identity(*paths: Path) -> str:
    return "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)


@register_dataset("mllm-beauty", family="mllmrec")
class MLLMBeauty(MLLMRecDataModule):
    """S3-Rec's Amazon Beauty: one line per user, `user item item ...` in time order (no timestamps), and each
    item's attribute ids (brand and categories, anonymised to integers: no names, no titles, no images)."""

    folder = "amazon-s3rec"
    text_source = ("the item's anonymous S3-Rec attribute ids written as words ('a17 a28 a29'; TF-IDF keeps tokens of "
                   "two or more characters): Beauty's offline files carry no titles, descriptions or images")

    def files(self) -> tuple[Path, Path]:
        return require_file(self.dataset_dir, BEAUTY), require_file(self.dataset_dir, BEAUTY_ATTRIBUTES)

    def source_identity(self) -> str:
        return "beauty|" + file_identity(*self.files())

    def load_sequences(self):
        sequences, attributes = self.files()
        rows = [np.array(line.split(), dtype=np.int64) for line in sequences.read_text().splitlines() if line]
        lengths = np.array([len(r) - 1 for r in rows])
        users = np.repeat(np.array([r[0] for r in rows]), lengths)
        items = np.concatenate([r[1:] for r in rows])
        num_items = int(items.max())
        table = json.loads(attributes.read_text())
        texts = [""] + [" ".join(f"a{a}" for a in table.get(str(i), [])) for i in range(1, num_items + 1)]
        return users, items, texts


@register_dataset("mllm-ml1m", family="mllmrec")
class MLLMMovieLens1M(MLLMRecDataModule):
    """MovieLens-1M's 1,000,209 ratings in time order per user (`ml-1m_seq.csv.gz`: user_id, seq_idx, movie_id),
    item text = "Title (year). Genres: A, B" from GroupLens' movies.dat in the `movielens-1m-meta` folder."""

    folder = "movielens-1m"
    meta_folder = "movielens-1m-meta"
    text_source = ("title with year and genres from movies.dat "
                   "('Toy Story (1995). Genres: Animation, Children's, Comedy')")

    def files(self) -> tuple[Path, Path]:
        return require_file(self.dataset_dir, ML1M), require_file(self.data_dir / self.meta_folder, ML1M_MOVIES)

    def source_identity(self) -> str:
        return "ml1m|" + file_identity(*self.files())

    def load_sequences(self):
        ratings, movies = self.files()
        frame = read_table(ratings, ["user_id", "seq_idx", "movie_id"], numeric=("user_id", "seq_idx", "movie_id")
                           ).sort_values(["user_id", "seq_idx"], kind="stable")
        raw = frame["movie_id"].to_numpy()
        ids, items = np.unique(raw, return_inverse=True)  # dense 1..N in raw-id order
        meta = {}
        for line in movies.read_text(encoding="latin-1").splitlines():
            parts = line.split("::")
            if len(parts) == 3:
                meta[int(parts[0])] = f"{parts[1]}. Genres: {', '.join(parts[2].split('|'))}"
        missing = [int(i) for i in ids if int(i) not in meta]
        if len(missing) == len(ids):
            raise DataError(f"{movies} describes none of the rated movies; is it MovieLens-1M's movies.dat?")
        texts = [""] + [meta.get(int(i), "") for i in ids]
        return frame["user_id"].to_numpy(), items + 1, texts


@register_dataset("mllm-synthetic", family="mllmrec")
class MLLMSynthetic(MLLMRecDataModule):
    """A planted signal, no files: items belong to `num_topics` topics (item vectors = topic direction + noise,
    texts "item 7 about topic 2"); each user prefers one topic and each of their items comes from it with
    probability `topic_affinity`, else uniformly. Item popularity is uniform, so popularity cannot rank."""

    folder = "mllm-synthetic"
    text_source = "planted: 'item I about topic T', vectors = topic one-hot + Gaussian noise"

    def __init__(self, num_users: int = 400, num_items: int = 80, num_topics: int = 4, min_length: int = 6,
                 max_length: int = 14, topic_affinity: float = 0.9, text_noise: float = 0.3, seed: int = 0,
                 max_history: int = 10, num_eval_negatives: int = 20, train_negatives: int = 1,
                 train_windows: int = 1, batch_size: int = 64, eval_batch_size: int = 256, **kwargs):
        super().__init__(max_history=max_history, num_eval_negatives=num_eval_negatives,
                         train_negatives=train_negatives, train_windows=train_windows, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, **kwargs)
        if num_items < num_topics or min_length < 2 or max_length < min_length:
            raise ValueError("need num_items >= num_topics and 2 <= min_length <= max_length")
        self.config = dict(num_users=num_users, num_items=num_items, num_topics=num_topics, min_length=min_length,
                           max_length=max_length, topic_affinity=topic_affinity, text_noise=text_noise, seed=seed)

    def source_identity(self) -> str:
        return "synthetic|" + json.dumps(self.config, sort_keys=True)

    @property
    def cache_dir(self) -> Path:
        return super().cache_dir / hashlib.sha1(self.source_identity().encode()).hexdigest()[:8]

    def topics(self) -> np.ndarray:
        c = self.config
        return np.arange(c["num_items"]) % c["num_topics"]  # topic of item i + 1

    def load_sequences(self):
        c = self.config
        rng = np.random.default_rng(c["seed"])
        topic = self.topics()
        lengths = rng.integers(c["min_length"], c["max_length"] + 1, size=c["num_users"])
        users = np.repeat(np.arange(c["num_users"]), lengths)
        liked = rng.integers(0, c["num_topics"], size=c["num_users"])[users]
        on_topic = rng.random(len(users)) < c["topic_affinity"]
        per_topic = c["num_items"] // c["num_topics"]
        # an item of topic t is t + num_topics * j; off-topic draws are uniform over the catalogue
        chosen = liked + c["num_topics"] * rng.integers(0, per_topic, size=len(users))
        chosen = np.where(on_topic, chosen, rng.integers(0, c["num_items"], size=len(users)))
        # a user never repeats an item: keep each user's first occurrence
        key = users * (c["num_items"] + 1) + chosen
        _, first = np.unique(key, return_index=True)
        keep = np.sort(first)
        users, items = users[keep], chosen[keep] + 1
        short = np.bincount(users, minlength=c["num_users"]) < 2
        keep = ~short[users]
        texts = [""] + [f"item {i + 1} about topic {t}" for i, t in enumerate(topic)]
        return users[keep], items[keep], texts

    def planted_text_embeddings(self) -> np.ndarray:
        c = self.config
        rng = np.random.default_rng(c["seed"] + 1)
        dim = max(8, c["num_topics"] * 2)
        vectors = np.zeros((c["num_items"] + 1, dim), np.float32)
        vectors[1 + np.arange(c["num_items"]), self.topics()] = 1.0
        vectors[1:] += c["text_noise"] * rng.standard_normal((c["num_items"], dim)).astype(np.float32)
        return vectors
