"""The dtr datamodule base: per-step patient records -> history windows -> patient-level splits -> batches.

A subclass builds flat per-step arrays (`build_steps`): which patient and time each step belongs to, the
step's vitals, previous-medication features, note id (into a table of note embeddings), the clinician's action
label and, where the data is an MDP, the state; and per-patient demographics and outcome. Everything after
that is shared and vectorised: left-padded windows of `history_len` steps gathered by index at batch time
(the per-step arrays are stored once, windows are [N, L] index matrices), patient-level splits
(train / validation / test, paper 80/10/10, where the validation patients are also the conformal calibration
pool; or train / validation / calibration / test, where no model selection touches the calibration patients), and the estimated counterfactual-mortality table of
paper App. B (an outcome model fitted on the training patients, queried with every action).
"""
from __future__ import annotations

import hashlib
import json
from importlib.metadata import version

import numpy as np
import torch
from torch.utils.data import Dataset

from contracts.atomic import save_cache
from contracts.batch import dtr as B
from datamodules.base import DataError, PaperboardDataModule, arrays_hash, load_cache
from datamodules.text import text_hash_entry

WINDOWS = ("all", "first")


class WindowDataset(Dataset):
    """Decision points gathered from per-step storage a whole batch at a time (one fancy index per key).

    `windows[i]` holds the step indices of sample i's history (the pad index = number of steps, a zero row);
    `next_windows[i]` the history of the same patient's next decision point (for offline RL)."""

    def __init__(self, steps: dict[str, torch.Tensor], samples: dict[str, torch.Tensor]):
        self.steps = steps
        self.samples = samples
        self.length = len(samples["window"])

    def __len__(self) -> int:
        return self.length

    def _history(self, window: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
        s = self.steps
        return {prefix + B.VITALS: s["vitals"][window], prefix + B.MEDS: s["meds"][window],
                prefix + B.NOTES: s["note_table"][s["note"][window]], prefix + B.MASK: s["real"][window]}

    def __getitems__(self, indices) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        smp = {k: v[index] for k, v in self.samples.items()}
        out = self._history(smp.pop("window"))
        out.update(self._history(smp.pop("next_window"), B.NEXT))
        out.update(smp)
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def patient_windows(patient: np.ndarray, t: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """For steps sorted by (patient, t): [S, L] left-padded indices of each step's last L steps (pad = S) and
    the index of each step's next step within its patient (or S at the patient's last step)."""
    S = len(patient)
    idx = np.arange(S)[:, None] - (length - 1) + np.arange(length)[None, :]
    valid = (idx >= 0) & (idx - np.arange(S)[:, None] + t[:, None] >= 0)  # same patient: t - offset >= 0
    windows = np.where(valid, idx, S)
    nxt = np.arange(1, S + 1)
    last = np.r_[patient[1:] != patient[:-1], True]
    nxt[last] = S
    return windows, nxt


class DTRDataModule(PaperboardDataModule):
    """Shared pipeline. Subclasses implement `build_steps()` and `model_kwargs` extras via `mdp_name`."""

    mdp_name: str | None = None

    def __init__(self, data_dir: str | None = None, history_len: int = 8, windows: str = "all",
                 split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1), split_seed: int = 0,
                 outcome_model: bool = True, batch_size: int = 256, eval_batch_size: int = 1024,
                 num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        if windows not in WINDOWS:
            raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
        if history_len < 1:
            raise ValueError("history_len must be >= 1")
        if len(split_fractions) not in (3, 4) or abs(sum(split_fractions) - 1) > 1e-6 or min(split_fractions) <= 0:
            raise ValueError(f"split_fractions must be three (train, validation=calibration, test) or four (train, "
                             f"validation, calibration, test) positive fractions summing to 1, got {split_fractions}")
        self.history_len = history_len
        self.windows = windows
        self.split_fractions = tuple(split_fractions)
        self.split_seed = split_seed
        self.outcome_model = outcome_model
        self.info: dict = {}

    # ----- what a subclass provides --------------------------------------------------------------------------
    def build_steps(self) -> dict[str, np.ndarray]:
        """Per-step arrays, sorted by (patient, t): patient [S] (0..P-1), t [S], vitals [S,Fv], meds [S,Fm],
        note [S] (row of note_table, -1 = no note), action [S] (label 0..24), state [S] (-1 without an MDP);
        per patient: demo [P,Fd], died [P]; and note_table [U,Fn] with note_identity (`text_identity` of the notes
        it encodes; omitted or empty when the table is not an encoding of text)."""
        raise NotImplementedError

    def cache_key(self) -> str:
        """A string naming everything that determines build_steps' output."""
        raise NotImplementedError

    # ----- shared pipeline ---------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._arrays()

    def _arrays(self) -> dict[str, np.ndarray]:
        key = hashlib.sha1(f"{self.cache_key()}|L{self.history_len}|{self.split_fractions}|{self.split_seed}|"
                           f"outcome{self.outcome_model}|v2".encode()).hexdigest()[:16]
        path = self.cache_dir / f"{self.registry_name}-{key}.npz"
        cached = load_cache(path)
        if cached is not None:
            return cached
        arrays = self.build_steps()
        self._check_steps(arrays)
        arrays["split"] = self._split(len(arrays["died"]))
        arrays["cf_mortality"] = self._outcome_table(arrays)
        save_cache(path, arrays)
        return arrays

    def _check_steps(self, a: dict[str, np.ndarray]) -> None:
        order = np.lexsort((a["t"], a["patient"]))
        if not np.array_equal(order, np.arange(len(order))):
            raise DataError(f"{self.registry_name}: steps must be sorted by patient then time")
        if a["action"].min() < 0 or a["action"].max() >= B.NUM_ACTIONS:
            raise DataError(f"{self.registry_name}: action labels must lie in 0..{B.NUM_ACTIONS - 1}")

    def _split(self, num_patients: int) -> np.ndarray:
        """By patient (never a patient in two splits): 0 = train, 1 = validation, 2 = test, 3 = calibration (four
        fractions, given as train, validation, calibration, test; with three the validation patients calibrate)."""
        perm = np.random.default_rng(self.split_seed).permutation(num_patients)
        codes = (0, 1, 2) if len(self.split_fractions) == 3 else (0, 1, 3, 2)
        cuts = np.round(np.cumsum(self.split_fractions)[:-1] * num_patients).astype(int)
        split = np.zeros(num_patients, dtype=np.int8)
        for code, part in zip(codes, np.split(perm, cuts)):
            split[part] = code
        return split

    def _decision_steps(self, a: dict[str, np.ndarray]) -> np.ndarray:
        """Step indices that are samples: every step ("all"), or the paper's single step L-1 of patients with
        at least L steps ("first": stays with >= 8 steps truncated to the first 8, dataloader.py)."""
        if self.windows == "all":
            return np.arange(len(a["t"]))
        return np.flatnonzero(a["t"] == self.history_len - 1)

    def _outcome_features(self, a: dict[str, np.ndarray], steps: np.ndarray) -> np.ndarray:
        note = a["note_table"][np.clip(a["note"][steps], 0, None)] * (a["note"][steps] >= 0)[:, None]
        return np.concatenate([a["vitals"][steps], a["meds"][steps], note, a["demo"][a["patient"][steps]]], 1)

    def _outcome_table(self, a: dict[str, np.ndarray]) -> np.ndarray:
        """[S, 25] estimated P(death | step features, action a) for every step and action (paper App. B).

        The paper's estimator is an LSTM over vitals and notes plus MLPs over demographics and the one-hot
        treatment, trained with CE on the observed treatment and in-hospital death; ours is a one-hidden-layer
        MLP (sklearn, fixed seed) on the current step's vitals, medication features, note embedding,
        demographics and the one-hot action, fitted on training patients. It is part of the data (same for
        every model), and its numbers are labelled *estimated*."""
        S = len(a["t"])
        if not self.outcome_model:
            return np.full((S, B.NUM_ACTIONS), np.nan, dtype=np.float32)
        from sklearn.neural_network import MLPClassifier
        from sklearn.preprocessing import StandardScaler

        steps = np.arange(S)
        x = self._outcome_features(a, steps)
        died = a["died"][a["patient"]]
        train = a["split"][a["patient"]] == 0
        scaler = StandardScaler().fit(x[train])
        xs = scaler.transform(x).astype(np.float32)
        onehot = np.eye(B.NUM_ACTIONS, dtype=np.float32)
        fit_rows = np.flatnonzero(train)
        if len(fit_rows) > 60000:
            fit_rows = np.random.default_rng(0).choice(fit_rows, 60000, replace=False)
        clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=60, early_stopping=True, random_state=0)
        if len(np.unique(died[fit_rows])) < 2:
            return np.full((S, B.NUM_ACTIONS), float(died[fit_rows].mean()), dtype=np.float32)
        clf.fit(np.concatenate([xs[fit_rows], onehot[a["action"][fit_rows]]], 1), died[fit_rows])
        table = np.empty((S, B.NUM_ACTIONS), dtype=np.float32)
        for action in range(B.NUM_ACTIONS):  # 25 vectorised passes over all steps
            feats = np.concatenate([xs, np.broadcast_to(onehot[action], (S, B.NUM_ACTIONS))], 1)
            table[:, action] = clf.predict_proba(feats)[:, 1]
        return table

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        a = self._arrays()
        S = len(a["t"])
        windows, nxt = patient_windows(a["patient"], a["t"], self.history_len)
        windows = np.vstack([windows, np.full((1, self.history_len), S)])  # row S: an all-pad window
        zero = lambda x: np.vstack([x, np.zeros((1, *x.shape[1:]), dtype=x.dtype)])  # noqa: E731
        note = np.r_[a["note"], -1]
        note_table = np.vstack([a["note_table"], np.zeros((1, a["note_table"].shape[1]), dtype=np.float32)])
        steps = {"vitals": torch.from_numpy(zero(a["vitals"]).astype(np.float32)),
                 "meds": torch.from_numpy(zero(a["meds"]).astype(np.float32)),
                 "note": torch.from_numpy(np.where(note < 0, len(note_table) - 1, note).astype(np.int64)),
                 "note_table": torch.from_numpy(note_table.astype(np.float32)),
                 "real": torch.from_numpy(np.r_[np.ones(S, bool), False])}
        decision = self._decision_steps(a)
        patient = a["patient"][decision]
        died = a["died"][patient].astype(np.float32)
        done = nxt[decision] == S
        samples = {
            "window": torch.from_numpy(windows[decision]), "next_window": torch.from_numpy(windows[nxt[decision]]),
            B.DEMO: torch.from_numpy(a["demo"][patient].astype(np.float32)),
            B.ACTION: torch.from_numpy(a["action"][decision].astype(np.int64)),
            B.PATIENT: torch.from_numpy(patient.astype(np.int64)),
            B.DIED: torch.from_numpy(died), B.STATE: torch.from_numpy(a["state"][decision].astype(np.int64)),
            B.CF_MORTALITY: torch.from_numpy(a["cf_mortality"][decision].astype(np.float32)),
            B.DONE: torch.from_numpy(done.astype(np.float32)),
            B.REWARD: torch.from_numpy((done & (died == 0)).astype(np.float32)),
        }
        split = a["split"][patient]
        pick = lambda mask, calib: {**{k: v[torch.from_numpy(mask)] for k, v in samples.items()},  # noqa: E731
                                    B.CALIB: torch.full((int(mask.sum()),), calib)}
        calib_code = 3 if len(self.split_fractions) == 4 else 1
        for name, code in (("train", 0), ("validation", 1), ("test", 2), ("calibration", calib_code)):
            if not (split == code).any():
                raise DataError(f"{self.registry_name}: the {name} split is empty ({len(a['died'])} patients, "
                                f"fractions {self.split_fractions}); use more patients")
        self.train_set = WindowDataset(steps, pick(split == 0, False))
        self.val_set = WindowDataset(steps, pick(split == 1, False))
        calib, test = pick(split == calib_code, True), pick(split == 2, False)
        # The test loader carries the calibration pool first (calib=True) for the conformal step of paper §5.
        self.test_set = WindowDataset(steps, {k: torch.cat([calib[k], test[k]]) for k in test})
        self.dims = {"vitals_dim": a["vitals"].shape[1], "meds_dim": a["meds"].shape[1],
                     "notes_dim": a["note_table"].shape[1], "demo_dim": a["demo"].shape[1]}
        survivors = 1 - a["died"]
        self.info = {"patients": int(len(a["died"])), "steps": int(S), "survivors": int(survivors.sum()),
                     "deceased": int(a["died"].sum()), "train_samples": len(self.train_set),
                     "validation_samples": len(self.val_set),
                     "calibration_samples": len(calib[B.ACTION]), "test_samples": len(test[B.ACTION]),
                     "avg_length": float(S / len(a["died"])), **{k: v for k, v in self.extra_info().items()}}
        self.data_hash = arrays_hash(self._hashed(a))

    def _hashed(self, a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The arrays as a data hash reads them. Two are fitted floats whose last bits differ between machines and
        enter as what they are computed from: the note table (the notes and the encoder, `text_identity`) and the
        estimated outcomes (the other arrays, which are hashed, and the estimator's library version)."""
        hashed = {k: v for k, v in a.items() if k != "note_identity"}
        hashed["note_table"] = text_hash_entry(a["note_table"], a.get("note_identity"))
        if self.outcome_model:
            hashed["cf_mortality"] = np.frombuffer(f"mlp64|scikit-learn {version('scikit-learn')}".encode(), np.uint8)
        return hashed

    def extra_info(self) -> dict:
        return {}

    def model_kwargs(self) -> dict:
        return {**self.dims, "history_len": self.history_len, "num_actions": B.NUM_ACTIONS, "mdp": self.mdp_name}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, **self.info}

    def config_json(self) -> str:
        return json.dumps(self.info, sort_keys=True)
