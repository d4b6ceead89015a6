"""`dtr-mimic`: a credentialed user's own MIMIC-III/IV Sepsis-3 cohort in the AI-Clinician layout (SAFER's data).

No data ships with paperboard (PhysioNet credentialing). Produce the files with the AI-Clinician pipeline
(Komorowski et al. 2018; Python port `uribyul/py_ai_clinician`, which SAFER's README runs first) and put them
in `<data dir>/mimic-sepsis/`:

MIMICtable.csv  one row per stay and 4-hour step, sorted or not. Required columns:
  icustayid, bloc (step number), died_in_hosp (0/1),
  demographics: gender, age, re_admission, Weight_kg                                  (SAFER code: 4)
  treatment:    input_4hourly (IV fluid, mL per 4 h), max_dose_vaso (norepinephrine-equivalent ug/kg/min),
                median_dose_vaso, input_total
  vitals/labs:  the VITALS tuple below (AI-Clinician names)
notes.csv       (unless notes_file=False) one row per stay and step with a note: icustayid, bloc, text (the
                step's notes joined with "; ", as SAFER's preprocessing notebook does with NOTEEVENTS).

Processing (vectorised, as SAFER's code): action = vaso_bin*5 + fluid_bin, bin 0 = no drug and bins 1-4 the
quartiles of the non-zero doses; the four medication columns are shifted one step (the model sees the doses
given *before* the decision, never the decision itself); AI-Clinician's log columns get log(0.1 + x); every
feature is z-scored with training-patient statistics; missing values become 0 after z-scoring (impute first:
the pipeline's KNN imputation). Stays are kept whole (windows of history_len steps; `windows="first"` keeps the
paper's stays with >= 8 steps truncated to the first 8). Notes are embedded like ICU-Sepsis's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from contracts.batch import dtr as B
from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.dtr.base import DTRDataModule
from datamodules.text import embed_texts, resolve_encoder, text_identity
from datamodules.tables import read_table

DEMOGRAPHICS = ("gender", "age", "re_admission", "Weight_kg")
MEDICATION = ("median_dose_vaso", "max_dose_vaso", "input_total", "input_4hourly")
VITALS = ("GCS", "HR", "SysBP", "MeanBP", "DiaBP", "RR", "SpO2", "Temp_C", "FiO2_1", "Potassium", "Sodium",
          "Chloride", "Glucose", "BUN", "Creatinine", "Magnesium", "Calcium", "Ionised_Ca", "CO2_mEqL", "SGOT",
          "SGPT", "Total_bili", "Albumin", "Hb", "WBC_count", "Platelets_count", "PTT", "PT", "INR",
          "Arterial_pH", "paO2", "paCO2", "Arterial_BE", "Arterial_lactate", "HCO3", "mechvent", "Shock_Index",
          "PaO2_FiO2", "output_total", "output_4hourly", "cumulated_balance", "SOFA", "SIRS", "elixhauser")
LOG_COLUMNS = {"SpO2", "BUN", "Creatinine", "SGOT", "SGPT", "Total_bili", "INR", "input_total", "input_4hourly",
               "output_total", "output_4hourly", "median_dose_vaso", "max_dose_vaso"}
KEYS = ("icustayid", "bloc", "died_in_hosp")
TABLE = RemoteFile(names=("MIMICtable.csv", "MIMICtable.csv.gz"))
NOTES = RemoteFile(names=("notes.csv", "notes.csv.gz"))
FLAG = "--data-dir (a folder holding mimic-sepsis/MIMICtable.csv and mimic-sepsis/notes.csv, made with the " \
       "AI-Clinician pipeline from your credentialed MIMIC copy)"


def dose_bins(dose: np.ndarray) -> np.ndarray:
    """0 for no drug (dose <= 0 or missing), else 1-4 by the quartiles of the non-zero doses."""
    dose = np.nan_to_num(dose.astype(np.float64), nan=0.0)
    positive = dose > 0
    if not positive.any():
        return np.zeros(len(dose), dtype=np.int64)
    edges = np.quantile(dose[positive], [0.25, 0.5, 0.75])
    return np.where(positive, 1 + np.searchsorted(edges, dose, side="left").clip(0, 3), 0).astype(np.int64)


@register_dataset("dtr-mimic", family="dtr")
class MIMICSepsisDataModule(DTRDataModule):
    folder = "mimic-sepsis"

    def __init__(self, data_dir: str | None = None, notes_file: bool = True, text_encoder: str = "auto",
                 tfidf_dim: int = 64, history_len: int = 8, windows: str = "all",
                 split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), split_seed: int = 0,
                 outcome_model: bool = True, batch_size: int = 256, eval_batch_size: int = 1024,
                 num_workers: int = 0):
        super().__init__(data_dir, history_len, windows, split_fractions, split_seed, outcome_model, batch_size,
                         eval_batch_size, num_workers)
        self.notes_file = notes_file
        self.text_encoder = resolve_encoder(text_encoder)
        self.tfidf_dim = tfidf_dim

    def _files(self):
        table = require_file(self.dataset_dir, TABLE, FLAG)
        notes = require_file(self.dataset_dir, NOTES, FLAG) if self.notes_file else None
        return table, notes

    def cache_key(self) -> str:
        table, notes = self._files()
        ids = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in (table, notes) if p)
        return f"mimic|{ids}|{self.notes_file}|{self.text_encoder}{self.tfidf_dim}"

    def build_steps(self) -> dict[str, np.ndarray]:
        table_path, notes_path = self._files()
        frame = read_table(table_path, [*KEYS, *DEMOGRAPHICS, *MEDICATION, *VITALS])
        frame = frame.sort_values(["icustayid", "bloc"], kind="stable").reset_index(drop=True)
        if frame.duplicated(["icustayid", "bloc"]).any():
            raise DataError(f"{table_path}: (icustayid, bloc) pairs repeat; one row per stay and 4-hour step expected")
        stay_codes, patient = np.unique(frame["icustayid"].to_numpy(), return_inverse=True)
        first = np.r_[True, patient[1:] != patient[:-1]]
        t = np.arange(len(frame)) - np.flatnonzero(first)[np.cumsum(first) - 1]
        # labels from the doses given at this step
        fluid = dose_bins(frame["input_4hourly"].to_numpy())
        vaso = dose_bins(frame["max_dose_vaso"].to_numpy())
        action = B.action_index(vaso, fluid)
        # features: log columns, previous-step medication, z-scores with training-patient statistics
        values = {c: frame[c].to_numpy(dtype=np.float64) for c in (*DEMOGRAPHICS, *MEDICATION, *VITALS)}
        for c in LOG_COLUMNS & set(values):
            values[c] = np.log(0.1 + np.clip(values[c], 0, None))
        for c in MEDICATION:
            values[c] = np.where(first, 0.0, np.r_[0.0, values[c][:-1]])
        split = self._split(len(stay_codes))
        train_rows = split[patient] == 0
        z = {}
        for c, v in values.items():
            mu, sd = np.nanmean(v[train_rows]), np.nanstd(v[train_rows])
            z[c] = np.nan_to_num((v - mu) / (sd if sd > 0 else 1.0), nan=0.0)
        demo = np.stack([z[c] for c in DEMOGRAPHICS], 1)[first]
        died = frame["died_in_hosp"].to_numpy(dtype=np.float64)[first]
        if not np.isin(died, (0, 1)).all():
            raise DataError(f"{table_path}: died_in_hosp must be 0 or 1")
        note, table, identity = self._notes(notes_path, frame, len(frame))
        return {"patient": patient.astype(np.int64), "t": t.astype(np.int64),
                "vitals": np.stack([z[c] for c in VITALS], 1).astype(np.float32),
                "meds": np.stack([z[c] for c in MEDICATION], 1).astype(np.float32), "note": note,
                "note_table": table, "note_identity": identity, "action": action.astype(np.int64),
                "state": np.full(len(frame), -1, dtype=np.int64), "demo": demo.astype(np.float32),
                "died": died.astype(np.float32)}

    def _notes(self, notes_path, frame: pd.DataFrame, num_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each step's row of the note table (-1: no note), the table, and what the table was computed from."""
        if notes_path is None:
            return (np.full(num_steps, -1, dtype=np.int64), np.zeros((1, self.tfidf_dim), dtype=np.float32),
                    np.zeros(0, np.uint8))
        notes = read_table(notes_path, ["icustayid", "bloc", "text"])
        notes = notes.dropna(subset=["text"]).drop_duplicates(["icustayid", "bloc"], keep="last")
        merged = frame[["icustayid", "bloc"]].merge(notes, on=["icustayid", "bloc"], how="left")
        has = merged["text"].notna().to_numpy()
        if not has.any():
            raise DataError(f"{notes_path}: no note matches a (icustayid, bloc) of MIMICtable.csv")
        texts, index = np.unique(merged["text"][has].astype(str).to_numpy(), return_inverse=True)
        table, used = embed_texts(list(texts), self.text_encoder, self.cache_dir, self.tfidf_dim)
        note = np.full(num_steps, -1, dtype=np.int64)
        note[has] = index
        return note, table, text_identity(list(texts), used, self.tfidf_dim)
