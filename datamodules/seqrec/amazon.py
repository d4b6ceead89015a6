"""Amazon Beauty (and Sports) 5-core with day-granular timestamps, from TiCoSeRec's files
(`beauty_5core_ts.csv.gz`: user_id, seq_idx, item_id, timestamp; see shared/data/amazon-beauty-ts/SOURCE.md).
Same-day items keep the file's sequence order."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.registry import register_dataset
from datamodules.base import RemoteFile, require_file
from datamodules.seqrec.base import SeqRecDataModule
from datamodules.tables import read_table

BEAUTY = RemoteFile(names=("beauty_5core_ts.csv.gz", "beauty_5core_ts.csv"), checksums={
    "beauty_5core_ts.csv.gz": "sha256:7513ba8eec5704ea506316784dbac1c620a0a53de4aa935b2b14d50df0956fc9"})
SPORTS = RemoteFile(names=("sports_5core_ts.csv.gz", "sports_5core_ts.csv"), checksums={
    "sports_5core_ts.csv.gz": "sha256:031bfbfabd5cc3560ea26aa3d328d8ab9083f78792c8cf443bf184db1ccacb48"})


class AmazonTimestamped(SeqRecDataModule):
    folder = "amazon-beauty-ts"
    source: RemoteFile

    def source_file(self) -> Path:
        return require_file(self.dataset_dir, self.source)

    def load_interactions(self, path: Path) -> dict[str, np.ndarray]:
        frame = read_table(path, ["user_id", "seq_idx", "item_id", "timestamp"],
                           numeric=("user_id", "seq_idx", "item_id", "timestamp")
                           ).sort_values(["user_id", "seq_idx"], kind="stable")
        return {"user": frame["user_id"].to_numpy(), "item": frame["item_id"].to_numpy(),
                "time": frame["timestamp"].to_numpy().astype(np.int64)}


@register_dataset("amazon-beauty", family="seqrec")
class AmazonBeauty(AmazonTimestamped):
    source = BEAUTY


@register_dataset("amazon-sports", family="seqrec")
class AmazonSports(AmazonTimestamped):
    source = SPORTS
