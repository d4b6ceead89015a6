"""dtr datasets: ICU-Sepsis trajectories with generated notes, and the AI-Clinician MIMIC layout."""
from datamodules.dtr import icu_sepsis, mimic  # noqa: F401  (registers the datasets)
