"""dtr datamodules: ICU-Sepsis generation (patient-level splits, windows, outcomes, notes) and the MIMIC
AI-Clinician loader on a tiny generated file in that layout (and its clear errors)."""
import numpy as np
import pandas as pd
import pytest
import torch

from contracts.batch import dtr as B
from datamodules.base import DataError
from datamodules.dtr.icu_sepsis import ICUSepsisDataModule
from datamodules.dtr.mdp import NUM_PATIENT_STATES
from datamodules.dtr.mimic import DEMOGRAPHICS, KEYS, MEDICATION, VITALS, MIMICSepsisDataModule


@pytest.fixture(scope="module")
def icu():
    dm = ICUSepsisDataModule(num_patients=300, text_encoder="tfidf")
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_icu_sepsis_splits_are_patient_level(icu):
    a = icu._arrays()
    split = a["split"][a["patient"]]
    assert set(np.unique(split)) == {0, 1, 2}
    # every step of a patient is in one split; test loader = calibration pool then test patients
    assert all(len(np.unique(split[a["patient"] == p])) == 1 for p in np.unique(a["patient"])[:50])
    test = icu.test_set.samples
    assert test[B.CALIB][: len(icu.val_set)].all() and not test[B.CALIB][len(icu.val_set):].any()


def test_icu_sepsis_windows_and_outcomes(icu):
    batch = icu.train_set.__getitems__(list(range(64)))
    assert batch[B.VITALS].shape == (64, 8, icu.dims["vitals_dim"]) and batch[B.MASK][:, -1].all()
    # left padding: once a step is real, every later step is real
    m = batch[B.MASK].int()
    assert (m[:, 1:] >= m[:, :-1]).all()
    assert ((batch[B.STATE] >= 0) & (batch[B.STATE] < NUM_PATIENT_STATES)).all()
    # reward only at a survivor's last step
    assert torch.equal(batch[B.REWARD], batch[B.DONE] * (1 - batch[B.DIED]))
    assert 0.1 < icu.info["deceased"] / icu.info["patients"] < 0.4  # the MDP's ~22 % mortality
    # the note table: one embedding per used note, notes differ across states
    assert icu.test_set.steps["note_table"].shape[1] == 64


def test_icu_sepsis_cache_is_reused(icu):
    again = ICUSepsisDataModule(num_patients=300, text_encoder="tfidf")
    again.setup("fit")
    assert again.data_hash == icu.data_hash


def _mimic_layout(folder, stays=30, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 12, stays)
    rows = []
    for stay, length in enumerate(lengths):
        for bloc in range(1, length + 1):
            rows.append({"icustayid": 1000 + stay, "bloc": bloc})
    frame = pd.DataFrame(rows)
    frame["died_in_hosp"] = (frame["icustayid"] % 4 == 0).astype(int)
    for col in (*DEMOGRAPHICS, *VITALS):
        frame[col] = rng.normal(size=len(frame))
    for col in MEDICATION:
        frame[col] = np.where(rng.random(len(frame)) < 0.5, 0.0, rng.exponential(size=len(frame)))
    folder.mkdir(parents=True, exist_ok=True)
    frame.sample(frac=1, random_state=0).to_csv(folder / "MIMICtable.csv", index=False)  # unsorted on purpose
    notes = frame[["icustayid", "bloc"]].iloc[::2].copy()
    notes["text"] = np.where(rng.random(len(notes)) < 0.5, "patient on pressors; lactate up", "stable; fluids held")
    notes.to_csv(folder / "notes.csv", index=False)
    return frame


def test_mimic_loader_on_tiny_ai_clinician_file(tmp_path):
    frame = _mimic_layout(tmp_path / "mimic-sepsis")
    dm = MIMICSepsisDataModule(data_dir=str(tmp_path), text_encoder="tfidf", tfidf_dim=8, outcome_model=False)
    dm.setup("fit")
    assert dm.info["patients"] == 30 and dm.info["steps"] == len(frame)
    a = dm._arrays()
    assert a["vitals"].shape == (len(frame), len(VITALS)) and a["meds"].shape[1] == 4
    # bins: no drug -> 0; label = vaso_bin * 5 + fluid_bin
    ordered = frame.sort_values(["icustayid", "bloc"])
    no_drug = ((ordered["input_4hourly"] == 0) & (ordered["max_dose_vaso"] == 0)).to_numpy()
    assert (a["action"][no_drug] == 0).all() and (a["action"][~no_drug] > 0).all()
    # the medication features are the previous step's doses: zero at each stay's first step
    assert np.allclose(a["meds"][a["t"] == 0], a["meds"][a["t"] == 0][0])
    assert (a["note"] >= 0).sum() == len(frame[::2]) and (a["state"] == -1).all()
    assert dm.model_kwargs()["mdp"] is None


def test_mimic_loader_rejects_a_missing_column(tmp_path):
    folder = tmp_path / "mimic-sepsis"
    frame = _mimic_layout(folder)
    frame.drop(columns=["max_dose_vaso"]).to_csv(folder / "MIMICtable.csv", index=False)
    dm = MIMICSepsisDataModule(data_dir=str(tmp_path), text_encoder="tfidf")
    with pytest.raises(DataError, match="lacks column\\(s\\) max_dose_vaso"):
        dm.prepare_data()


def test_mimic_loader_fails_clearly_without_files(tmp_path):
    dm = MIMICSepsisDataModule(data_dir=str(tmp_path), text_encoder="tfidf")
    with pytest.raises(DataError, match="MIMICtable.csv.*AI-Clinician"):
        dm.prepare_data()


def _advantage_gap(rate: float, patients: int = 2000) -> tuple[float, float, float]:
    """(survivors' minus deceased patients' mean clinicians' advantage of the actions taken, worse-policy share of
    the deceased's decisions, of the survivors')."""
    from datamodules.dtr.icu_sepsis import simulate_cohort
    from datamodules.dtr.mdp import SURVIVAL, clinician_advantage, load_icu_sepsis

    mdp = load_icu_sepsis()
    cohort = simulate_cohort(mdp, patients, np.random.default_rng(7), unreliable_rate=rate, worse_rate=0.5)
    taken = cohort["actions"] >= 0
    advantage = clinician_advantage(mdp)[np.clip(cohort["states"], 0, NUM_PATIENT_STATES - 1),
                                         np.clip(cohort["actions"], 0, None)]
    died = cohort["outcome"] != SURVIVAL
    gap = advantage[~died][taken[~died]].mean() - advantage[died][taken[died]].mean()
    return float(gap), float(cohort["worst"][died][taken[died]].mean()), float(cohort["worst"][~died][taken[~died]].mean())


def test_reliability_knob_makes_deceased_patients_actions_worse_in_proportion():
    """The knob is what the board says it is: under the MDP's own values (the clinicians' advantage of the action
    taken), deceased patients' actions fall behind survivors' by an amount that grows linearly with the knob, and
    the share of their decisions drawn from the worse policy is knob x worse_rate; survivors' labels stay clean."""
    (g0, w0, s0), (g5, w5, s5), (g1, w1, s1) = (_advantage_gap(r) for r in (0.0, 0.5, 1.0))
    assert w0 == 0 and s0 == s5 == s1 == 0
    assert abs(w5 - 0.25) < 0.06 and abs(w1 - 0.5) < 0.06
    assert g0 < g5 < g1 and g1 - g0 > 0.003
    assert 0.3 < (g5 - g0) / (g1 - g0) < 0.7  # proportional, not a step


def test_notes_are_written_from_a_noisy_observation_only(monkeypatch):
    """The note template's inputs are a noisy observation of the state and a random generator: no behaviour
    policy, action, outcome or value reaches it. Its observations are the true state plus independent noise."""
    import inspect

    from datamodules.dtr import icu_sepsis
    from datamodules.dtr.mdp import load_icu_sepsis

    assert list(inspect.signature(icu_sepsis.write_notes).parameters) == ["observed_z", "rng"]
    seen = {}
    real = icu_sepsis.write_notes

    def spy(observed_z, rng):
        seen["z"] = observed_z
        return real(observed_z, rng)

    monkeypatch.setattr(icu_sepsis, "write_notes", spy)
    dm = ICUSepsisDataModule(num_patients=120, text_encoder="tfidf", tfidf_dim=8, note_noise_std=1.0,
                             outcome_model=False, generation_seed=3)
    a = dm.build_steps()
    vec = load_icu_sepsis().state_vectors[:NUM_PATIENT_STATES]
    truth = (vec[a["state"]] - vec.mean(0)) / vec.std(0).clip(1e-6)
    residual = seen["z"] - truth
    assert abs(residual.std() - 1.0) < 0.05  # noise of 1 column-std, independent of the true state
    # equal observations give equal notes whatever the true state or action behind them
    same = real(np.repeat(seen["z"][:1], 2, 0), np.random.default_rng(0))
    again = real(np.repeat(seen["z"][:1], 2, 0), np.random.default_rng(0))
    assert same == again
    # the tables leave the note-only findings out
    assert a["vitals"].shape[1] == len(icu_sepsis.TABLE_COLUMNS)
    assert not set(icu_sepsis.NOTE_ONLY_COLUMNS) & set(icu_sepsis.TABLE_COLUMNS)


def test_calibration_patients_are_disjoint_from_training_and_selection():
    dm = ICUSepsisDataModule(num_patients=200, text_encoder="tfidf", tfidf_dim=8, outcome_model=False,
                             split_fractions=(0.6, 0.1, 0.15, 0.15))
    dm.setup("fit")
    test = dm.test_set.samples
    calib_patients = set(test[B.PATIENT][test[B.CALIB]].tolist())
    test_patients = set(test[B.PATIENT][~test[B.CALIB]].tolist())
    train = set(dm.train_set.samples[B.PATIENT].tolist())
    val = set(dm.val_set.samples[B.PATIENT].tolist())
    assert calib_patients and test_patients
    assert not calib_patients & (train | val) and not calib_patients & test_patients
    assert not test_patients & (train | val)
    assert abs(len(calib_patients) - 30) <= 2 and abs(len(val) - 20) <= 2
    # with three fractions the validation patients calibrate (the paper's protocol)
    paper = ICUSepsisDataModule(num_patients=200, text_encoder="tfidf", tfidf_dim=8, outcome_model=False)
    paper.setup("fit")
    t = paper.test_set.samples
    assert set(t[B.PATIENT][t[B.CALIB]].tolist()) == set(paper.val_set.samples[B.PATIENT].tolist())
