"""dtr datasets: ICU-Sepsis trajectories with generated notes, and the AI-Clinician MIMIC layout."""
from datamodules.dtr import icu_sepsis, mimic  # noqa: F401  (registers the datasets)

# the public names: `from datamodules.dtr import ICUSepsisDataModule`
from datamodules.dtr.icu_sepsis import ICUSepsisDataModule
from datamodules.dtr.mimic import MIMICSepsisDataModule
__all__ = ["ICUSepsisDataModule", "MIMICSepsisDataModule"]
