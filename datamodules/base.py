"""What every datamodule shares: the data dir, files checked by sha256 (downloaded once where a URL exists),
atomic caches of preprocessed arrays with their content hash, and dataloaders that batch by slicing tensors
and never duplicate evaluation samples across processes."""
from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from contracts.atomic import atomic_write_bytes

DEFAULT_DATA_DIR = "~/.cache/paperboard"


class DataError(Exception):
    """A dataset problem the user must fix (missing file, wrong column, empty split); str() says how."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`--data-dir`, else env PAPERBOARD_DATA, else ~/.cache/paperboard."""
    return Path(data_dir or os.environ.get("PAPERBOARD_DATA") or DEFAULT_DATA_DIR).expanduser()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    """A file a dataset needs: its name(s) under the dataset folder, where it comes from, and its checksum.

    `names` lists accepted alternatives in order (e.g. the gzipped and the plain file); `checksums` maps a name
    to "algorithm:hexdigest" (sha256 where we computed it, md5 where that is what the publisher gives).
    """

    names: tuple[str, ...]
    url: str | None = None
    checksums: dict | None = None
    download_as: str | None = None  # the downloaded archive's name, when the URL is an archive
    extract: str | None = None  # the member of that archive that becomes names[-1]


def require_file(dataset_dir: Path, spec: RemoteFile, flag_hint: str = "--data-dir") -> Path:
    """Return the first existing file of `spec` under `dataset_dir`, downloading it if a URL exists.

    Fails with one message that names the files expected, where they go, the URL and the flag.
    """
    for name in spec.names:
        path = dataset_dir / name
        if path.exists():
            _check_sha(path, spec)
            return path
    if spec.url and os.environ.get("PAPERBOARD_OFFLINE") != "1":
        target = dataset_dir / (spec.download_as or spec.names[0])
        try:
            with urllib.request.urlopen(spec.url, timeout=30) as response:
                atomic_write_bytes(target, response.read())
            _check_sha(target, spec)
            if spec.extract is None:
                return target
            with zipfile.ZipFile(target) as archive:
                extracted = dataset_dir / spec.names[-1]
                atomic_write_bytes(extracted, archive.read(spec.extract))
            return extracted
        except OSError:
            pass  # no network here: fall through to the message below
    where = f"download it from {spec.url} and " if spec.url else ""
    raise DataError(
        f"missing dataset file: expected one of {', '.join(spec.names)} in {dataset_dir}. "
        f"Please {where}put it there, or point {flag_hint} (or env PAPERBOARD_DATA) at the folder that holds "
        f"{dataset_dir.name}/."
    )


def _check_sha(path: Path, spec: RemoteFile) -> None:
    expected = (spec.checksums or {}).get(path.name)
    if expected:
        algorithm, hexdigest = expected.split(":", 1)
        if file_digest(path, algorithm) != hexdigest:
            raise DataError(f"checksum mismatch for {path}: expected {expected}. The file is corrupt or a "
                            f"different version; delete it and fetch it again.")


def arrays_hash(arrays: dict[str, np.ndarray]) -> str:
    """Content hash of preprocessed arrays: two runs are comparable only when these match."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def load_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there is no cache or it is unusable: a truncated or garbled file (every
    member is read, so zip's CRC checks each array) is deleted with a one-line notice, and the caller rebuilds it."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        detail = str(err).split(". ")[0]
        print(f"paperboard: notice: the cache {path} is unreadable ({type(err).__name__}: {detail}); deleted it and "
              f"rebuilding", flush=True)
        path.unlink(missing_ok=True)
        return None


class TensorBatchDataset(Dataset):
    """A dict of equally long tensors, fetched a whole batch at a time through `__getitems__`
    (one fancy-index per key per batch instead of a Python call per sample)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"tensors differ in length: {lengths}")
        self.tensors = tensors
        self.length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {k: v[index] for k, v in self.tensors.items()}


def _already_batched(batch):
    return batch


class UnpaddedDistributedSampler(DistributedSampler):
    """Each rank takes every world_size-th sample, with no padding: the union over ranks is the dataset once.

    Lightning's default DistributedSampler pads the last batch by repeating samples, which double-counts them
    in evaluation metrics (RecBole PR #1872). Being a DistributedSampler, Lightning leaves this one in place.
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def cache_root() -> Path:
    """Preprocessed caches live apart from the data (which may be read-only): env PAPERBOARD_CACHE, else
    ~/.cache/paperboard/cache; each dataset keeps its caches in its own folder below."""
    return Path(os.environ.get("PAPERBOARD_CACHE") or Path(DEFAULT_DATA_DIR) / "cache").expanduser()


class PaperboardDataModule(pl.LightningDataModule):
    """Base for every dataset: data-dir handling and the two dataloader shapes (shuffled train, unpadded eval).

    Subclasses fill `self.train_set`, `self.val_set`, `self.test_set` (TensorBatchDataset) in `setup`, set
    `self.data_hash`, and implement `model_kwargs()` with what models need from the data.
    """

    folder: str = ""  # the dataset's folder under the data dir

    def __init__(self, data_dir: str | None = None, batch_size: int = 128, eval_batch_size: int = 256,
                 num_workers: int = 0):
        super().__init__()
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.data_hash: str | None = None

    @property
    def dataset_dir(self) -> Path:
        return self.data_dir / self.folder

    @property
    def cache_dir(self) -> Path:
        return cache_root() / self.folder

    def model_kwargs(self) -> dict:
        raise NotImplementedError

    def describe(self) -> dict:
        """Facts about the prepared data for the run record (sizes, hash)."""
        return {"data_hash": self.data_hash}

    def state_dict(self) -> dict:
        """The position of the training set's own numpy generator (`train_set.rng`, where a dataset draws its episodes
        or its order from one), saved in Lightning checkpoints so that a continued run draws on where the stopped one
        was instead of replaying the draws of its first epochs."""
        rng = getattr(getattr(self, "train_set", None), "rng", None)
        return {"train_rng": rng.bit_generator.state} if isinstance(rng, np.random.Generator) else {}

    def load_state_dict(self, state: dict) -> None:
        # Lightning restores a checkpoint after `setup`, so the training set exists here
        if "train_rng" in state:
            self.train_set.rng.bit_generator.state = state["train_rng"]

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, collate_fn=_already_batched) -> DataLoader:
        sampler = None
        if not shuffle and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            sampler = UnpaddedDistributedSampler(dataset)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                          collate_fn=collate_fn, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)
