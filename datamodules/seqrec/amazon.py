"""Amazon Beauty (and Sports) 5-core with day-granular timestamps, from TiCoSeRec's files
(`beauty_5core_ts.csv.gz`: user_id, seq_idx, item_id, timestamp; see shared/data/amazon-beauty-ts/SOURCE.md).
Same-day items keep the file's sequence order.

Item side information (`item_features=True`) comes from S3-Rec's files of the same interactions
(`amazon-s3rec/<Name>.txt` and `<Name>_item2attributes.json`), whose item ids differ from TiCoSeRec's. Users are the
same line for line, so an item is aligned by its set of users: the TiCoSeRec item and the S3-Rec item bought by
exactly the same users are the same product (each user set is hashed with two random 62-bit weights per user,
XOR-combined; sequence lengths per user are checked first). A few items share their whole user set with other items
(13 in Beauty); those keep only the attributes all their candidates have in common, and the board states the count.

S3-Rec's attribute file mixes brand and categories under one id space (its preprocessing writes an item's brand
first, then the categories of its category paths minus the root). An attribute id that never follows another one in
any item's list can only be a brand, so fields are `brand` (the first attribute when it is such an id) and
`category` (the rest, up to 5 slots). The offline files have no titles or descriptions: there is no text here.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.seqrec.base import ItemMetadata, SeqRecDataModule
from datamodules.tables import read_table

BEAUTY = RemoteFile(names=("beauty_5core_ts.csv.gz", "beauty_5core_ts.csv"), checksums={
    "beauty_5core_ts.csv.gz": "sha256:7513ba8eec5704ea506316784dbac1c620a0a53de4aa935b2b14d50df0956fc9"})
SPORTS = RemoteFile(names=("sports_5core_ts.csv.gz", "sports_5core_ts.csv"), checksums={
    "sports_5core_ts.csv.gz": "sha256:031bfbfabd5cc3560ea26aa3d328d8ab9083f78792c8cf443bf184db1ccacb48"})
S3REC_FOLDER = "amazon-s3rec"
BEAUTY_S3REC = (
    RemoteFile(names=("Beauty.txt",), checksums={
        "Beauty.txt": "sha256:226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"}),
    RemoteFile(names=("Beauty_item2attributes.json",), checksums={
        "Beauty_item2attributes.json": "sha256:129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4"}))
SPORTS_S3REC = (
    RemoteFile(names=("Sports_and_Outdoors.txt",), checksums={
        "Sports_and_Outdoors.txt": "sha256:2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2"}),
    RemoteFile(names=("Sports_and_Outdoors_item2attributes.json",), checksums={
        "Sports_and_Outdoors_item2attributes.json":
            "sha256:7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b"}))


def user_set_signatures(users: np.ndarray, items: np.ndarray, num_users: int, seed: int = 0) -> pd.DataFrame:
    """Per item (index, sorted): two 62-bit XOR-hashes of its set of users (a user interacting twice would cancel
    out; 5-core files have no repeated pairs) and its user count. One sort and two `reduceat`s."""
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 2**62, size=(2, num_users + 1), dtype=np.int64)
    order = np.argsort(items, kind="stable")
    ids, starts, counts = np.unique(items[order], return_index=True, return_counts=True)
    hashed = [np.bitwise_xor.reduceat(w[users[order]], starts) for w in weights]
    return pd.DataFrame({"a": hashed[0], "b": hashed[1], "users": counts}, index=pd.Index(ids, name="item"))


class AmazonTimestamped(SeqRecDataModule):
    folder = "amazon-beauty-ts"
    source: RemoteFile
    s3rec: tuple[RemoteFile, RemoteFile]

    def source_file(self) -> Path:
        return require_file(self.dataset_dir, self.source)

    def load_interactions(self, path: Path) -> dict[str, np.ndarray]:
        frame = read_table(path, ["user_id", "seq_idx", "item_id", "timestamp"],
                           numeric=("user_id", "seq_idx", "item_id", "timestamp")
                           ).sort_values(["user_id", "seq_idx"], kind="stable")
        return {"user": frame["user_id"].to_numpy(), "item": frame["item_id"].to_numpy(),
                "time": frame["timestamp"].to_numpy().astype(np.int64)}

    # ----- side information ----------------------------------------------------------------------------------
    def metadata_files(self) -> tuple[Path, Path]:
        folder = self.data_dir / S3REC_FOLDER
        return require_file(folder, self.s3rec[0]), require_file(folder, self.s3rec[1])

    def metadata_identity(self) -> str:
        parts = [f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in self.metadata_files()]
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()

    def align_to_s3rec(self, raw_item_ids: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
        """For each of our items (raw TiCoSeRec ids), the S3-Rec item ids with the same user set, and a flag per
        item that is True where there is more than one."""
        sequences_path, _ = self.metadata_files()
        ours = self.load_interactions(self.source_file())
        lines = [line.split() for line in sequences_path.read_text().splitlines() if line.strip()]
        s3_users = np.repeat(np.array([int(p[0]) for p in lines]), [len(p) - 1 for p in lines])
        s3_items = np.concatenate([np.asarray(p[1:], dtype=np.int64) for p in lines])
        our_lengths = pd.Series(ours["user"]).value_counts().sort_index()
        s3_lengths = pd.Series(s3_users).value_counts().sort_index()
        if not our_lengths.equals(s3_lengths):
            raise DataError(f"{sequences_path} does not hold the same users (ids and sequence lengths) as "
                            f"{self.source_file()}: the items cannot be aligned by their users")
        num_users = int(max(our_lengths.index.max(), s3_lengths.index.max()))
        mine = user_set_signatures(ours["user"], ours["item"], num_users).reindex(raw_item_ids)
        theirs = user_set_signatures(s3_users, s3_items, num_users)
        candidates = theirs.reset_index().groupby(["a", "b", "users"])["item"].agg(list)
        matched = pd.Series(list(zip(mine["a"], mine["b"], mine["users"]))).map(candidates)
        if matched.isna().any():
            raise DataError(f"{int(matched.isna().sum())} items of {self.source_file()} have no S3-Rec item with the "
                            f"same users in {sequences_path}")
        return list(matched), np.array([len(m) > 1 for m in matched])

    def item_metadata(self, raw_item_ids: np.ndarray) -> ItemMetadata:
        _, attributes_path = self.metadata_files()
        attributes = {int(k): v for k, v in json.loads(attributes_path.read_text()).items()}
        following = {a for values in attributes.values() for a in values[1:]}
        brand_ids = {v[0] for v in attributes.values() if v and v[0] not in following}
        matched, ambiguous = self.align_to_s3rec(raw_item_ids)
        brands, categories = [], []
        for candidates in matched:  # one short list per item
            lists = [attributes.get(c, []) for c in candidates]
            common = [a for a in lists[0] if all(a in other for other in lists[1:])]
            brand = [a for a in common[:1] if a in brand_ids]
            brands.append(brand)
            categories.append([a for a in common if a not in brand])
        return ItemMetadata(
            fields={"brand": brands, "category": categories},
            text_source="none: the offline S3-Rec and TiCoSeRec files carry no titles or descriptions",
            notes={"items_with_ambiguous_alignment": int(ambiguous.sum()),
                   "items_without_brand": int(sum(not b for b in brands)),
                   "brand_ids_inferred": len(brand_ids)})


@register_dataset("amazon-beauty", family="seqrec")
class AmazonBeauty(AmazonTimestamped):
    source = BEAUTY
    s3rec = BEAUTY_S3REC


@register_dataset("amazon-sports", family="seqrec")
class AmazonSports(AmazonTimestamped):
    source = SPORTS
    s3rec = SPORTS_S3REC
