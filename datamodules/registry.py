"""The dataset registry: short name -> LightningDataModule class."""
from lightning_modules.registry import Registry

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register
