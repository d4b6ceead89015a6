"""ICU-Sepsis patient trajectories with clinical notes: the public stand-in for SAFER's MIMIC-III cohort.

The MDP of the PyPI package `icu-sepsis` (built from MIMIC-III with the AI-Clinician pipeline, the same 5x5
fluid x vasopressor action grid as SAFER) is rolled out for three groups of patients (`simulate_cohort`):

- most are treated with the clinicians' behaviour policy (`env.expert_policy`);
- `explore_fraction` of them explore: a uniformly random action with probability `explore_eps` per step
  (action diversity);
- with probability `unreliable_rate` (the label-reliability knob), a patient who dies is one who received
  unreliable care: clinicians whose decisions are, each with probability `worse_rate`, the worst admissible
  action at that state under the clinicians' own values (`mdp.worst_policy`). Survivors never are. This is
  SAFER's premise, that the treatments given to patients who died are less reliable labels, with the share of
  bad decisions among the deceased proportional to the knob (`simulate_cohort`). `unreliable_rate=0` is the
  stand-in without that premise.

Per step the model sees:
- vitals: the state's cluster centre on the table columns (the 47 state columns minus the static demographics and
  minus NOTE_ONLY_COLUMNS), plus Gaussian noise of `noise_std` x the column's std across states (the true state is
  never observed);
- meds (the paper's 4 previous-medication columns): previous fluid and vaso bins /4 and their running means;
- demographics (gender, age, Weight_kg, re_admission columns of the first state, with noise), static;
- a templated clinical note (`write_notes`) written from a SECOND, independent noisy observation of the state
  (noise `note_noise_std` x the column std): its severity band, its two most abnormal variables, and bedside
  findings the tables lack (mental status from GCS, ventilation, lactate trend: NOTE_ONLY_COLUMNS), in varied
  phrasing. The note writer sees only that observation: never the behaviour policy, the action, the outcome or
  the MDP's values, so a notes-only model cannot read the label off the note (the board's leak check).

Notes are embedded with all-MiniLM-L6-v2 (offline package) or TF-IDF (see datamodules/text.py); every
embedding is cached. Outcome: death when the episode ends in the death state, else survival.
"""
from __future__ import annotations

import numpy as np

from contracts.batch import dtr as B
from contracts.registry import register_dataset
from datamodules.base import DataError
from datamodules.dtr.base import DTRDataModule
from datamodules.dtr.mdp import (DEATH, NUM_PATIENT_STATES, STATE_COLUMNS, SURVIVAL, SepsisMDP, load_icu_sepsis,
                                 reference_survival, rollout, worst_policy)
from datamodules.text import embed_texts, resolve_encoder, text_identity

DEMO_COLUMNS = ("gender", "age", "Weight_kg", "re_admission")
NOTE_ONLY_COLUMNS = ("GCS", "mechvent", "Arterial_lactate")
TABLE_COLUMNS = tuple(c for c in STATE_COLUMNS if c not in DEMO_COLUMNS and c not in NOTE_ONLY_COLUMNS)
GROUPS = ("clinicians", "exploring", "unreliable")

_SEVERITY = (["minimal organ dysfunction", "organ function largely preserved", "low SOFA"],
             ["moderate organ dysfunction", "some organ failure", "intermediate SOFA"],
             ["severe multi-organ dysfunction", "multi-organ failure", "high SOFA"])
_MENTAL = (["obtunded", "GCS depressed, not following commands", "unresponsive to voice"],
           ["drowsy but rousable", "intermittently confused", "mildly altered mental status"],
           ["alert and oriented", "awake, following commands", "neurologically intact"])
_VENT = (["breathing spontaneously", "on room air", "not ventilated"],
         ["intubated and ventilated", "on mechanical ventilation", "remains on the ventilator"])
_LACTATE = (["lactate clearing", "lactate normal", "no lactic acidosis"],
            ["lactate borderline", "lactate mildly raised", "lactate unchanged"],
            ["lactate rising", "marked lactic acidosis", "hyperlactataemia"])
_HIGH = ("elevated {n}", "high {n}", "{n} up")
_LOW = ("low {n}", "decreased {n}", "{n} down")
_ABNORMAL_COLUMNS = tuple(c for c in TABLE_COLUMNS if c != "SOFA")


def _band(z: np.ndarray, edges=(-0.5, 0.5)) -> np.ndarray:
    return np.digitize(z, edges)


def write_notes(observed_z: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One note per row of `observed_z` [N, 47]: a noisy observation of the state vector (STATE_COLUMNS order),
    z-scored with the columns' mean and std across patient states. These are the template's only inputs: the
    note knows what a bedside observer saw, nothing about the treatment chosen or the patient's prospects."""
    col = {c: i for i, c in enumerate(STATE_COLUMNS)}
    n = len(observed_z)
    pick = lambda table, band: np.array([[*row] for row in table], dtype=object)[band, rng.integers(3, size=n)]  # noqa: E731
    severity = pick(_SEVERITY, _band(observed_z[:, col["SOFA"]]))
    mental = pick(_MENTAL, 2 - _band(-observed_z[:, col["GCS"]]))
    vent = pick(_VENT, (observed_z[:, col["mechvent"]] > 0).astype(int))
    lactate = pick(_LACTATE, _band(observed_z[:, col["Arterial_lactate"]]))
    abnormal = observed_z[:, [col[c] for c in _ABNORMAL_COLUMNS]]
    top = np.argsort(-np.abs(abnormal), axis=1)[:, :2]
    top_z = np.take_along_axis(abnormal, top, 1)
    phrase = rng.integers(3, size=(n, 2))
    names = np.array([c.replace("_", " ") for c in _ABNORMAL_COLUMNS], dtype=object)
    notes = []
    for i in range(n):  # string assembly only; every choice above is vectorised
        findings = [(_HIGH if top_z[i, k] > 0 else _LOW)[phrase[i, k]].format(n=names[top[i, k]]) for k in range(2)]
        notes.append(f"{severity[i]}; {mental[i]}; {vent[i]}; {findings[0]}; {findings[1]}; {lactate[i]}.")
    return notes


def simulate_cohort(mdp: SepsisMDP, num_patients: int, rng: np.random.Generator, explore_fraction: float = 0.2,
                    explore_eps: float = 0.5, unreliable_rate: float = 0.0, worse_rate: float = 0.5,
                    max_steps: int = 60) -> dict[str, np.ndarray]:
    """The cohort of the module docstring: states/actions [P, T] (-1 after the end, MDP indexing), length [P],
    outcome [P] (terminal state), group [P] (index into GROUPS), worst [P, T] (True where the decision was drawn
    from the worse policy). Episodes cut at max_steps (no outcome) are dropped.

    Outcome-dependent reliability: each deceased patient of the clinicians' cohort is, with probability
    `unreliable_rate`, replaced by a deceased patient of unreliable care (clinicians whose every decision is the
    worse policy's with probability `worse_rate`); survivors are never replaced. Mortality and the survivors are
    those of the knob-0 cohort, and a deceased patient's decisions are the worse policy's with probability
    unreliable_rate x worse_rate: the deceased patients' labels are unreliable in proportion to the knob."""
    clinicians = mdp.expert_policy
    uniform = np.zeros_like(clinicians)
    uniform[:NUM_PATIENT_STATES] = 1.0 / B.NUM_ACTIONS
    exploring = (1 - explore_eps) * clinicians + explore_eps * uniform
    n_explore = int(round(explore_fraction * num_patients))
    parts = [rollout(clinicians, num_patients - n_explore, rng, mdp, max_steps),
             rollout(exploring, n_explore, rng, mdp, max_steps)]
    group = np.r_[np.zeros(num_patients - n_explore, dtype=np.int64), np.ones(n_explore, dtype=np.int64)]
    died = np.concatenate([p["outcome"] for p in parts]) == DEATH
    replace = np.flatnonzero(died & (rng.random(num_patients) < unreliable_rate))
    if len(replace):
        # deceased patients of unreliable care: roll out until there are enough (about a quarter of them die)
        pool, found = [], 0
        while found < len(replace):
            batch = rollout(clinicians, 4 * (len(replace) - found) + 16, rng, mdp, max_steps,
                            alternative=worst_policy(mdp), alternative_rate=worse_rate)
            dead = np.flatnonzero(batch["outcome"] == DEATH)
            pool.append({k: v[dead] for k, v in batch.items()})
            found += len(dead)
        parts.append({k: np.concatenate([p[k] for p in pool]) if v.ndim == 1 else
                      np.concatenate([_pad_to(p[k], max(q[k].shape[1] for q in pool)) for p in pool])
                      for k, v in pool[0].items()})
        parts[-1] = {k: v[: len(replace)] for k, v in parts[-1].items()}
        group = np.r_[group, np.full(len(replace), 2)]
    T = max(p["actions"].shape[1] for p in parts)
    states = np.concatenate([_pad_to(p["states"][:, :-1] if p["states"].shape[1] > 1 else p["states"], T)
                             for p in parts])[:, :T]
    actions = np.concatenate([_pad_to(p["actions"], T) for p in parts])
    worst = np.concatenate([_pad_to(p["from_alternative"], T, False) for p in parts])
    length = np.concatenate([p["length"] for p in parts])
    outcome = np.concatenate([p["outcome"] for p in parts])
    keep = (outcome >= 0) & (length >= 1)
    keep[replace] = False
    order = rng.permutation(np.flatnonzero(keep))
    return {"states": states[order], "actions": actions[order], "length": length[order], "outcome": outcome[order],
            "group": group[order], "worst": worst[order]}


def _pad_to(x: np.ndarray, width: int, fill=-1) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, max(0, width - x.shape[1]))), constant_values=fill)


@register_dataset("icu-sepsis", family="dtr")
class ICUSepsisDataModule(DTRDataModule):
    mdp_name = "icu-sepsis"
    folder = "icu-sepsis"

    def __init__(self, data_dir: str | None = None, num_patients: int = 5000, explore_fraction: float = 0.2,
                 explore_eps: float = 0.5, unreliable_rate: float = 0.0, worse_rate: float = 0.5,
                 noise_std: float = 1.0, note_noise_std: float = 1.0, text_encoder: str = "auto",
                 tfidf_dim: int = 64, max_steps: int = 60, generation_seed: int = 0, history_len: int = 8,
                 windows: str = "all", split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1), split_seed: int = 0,
                 outcome_model: bool = True, batch_size: int = 256, eval_batch_size: int = 1024,
                 num_workers: int = 0):
        super().__init__(data_dir, history_len, windows, split_fractions, split_seed, outcome_model, batch_size,
                         eval_batch_size, num_workers)
        for name, value in (("explore_fraction", explore_fraction), ("explore_eps", explore_eps),
                            ("unreliable_rate", unreliable_rate), ("worse_rate", worse_rate)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {value}")
        if noise_std < 0 or note_noise_std < 0:
            raise ValueError("noise_std and note_noise_std are standard deviations (>= 0)")
        self.num_patients = num_patients
        self.explore_fraction = explore_fraction
        self.explore_eps = explore_eps
        self.unreliable_rate = unreliable_rate
        self.worse_rate = worse_rate
        self.noise_std = noise_std
        self.note_noise_std = note_noise_std
        self.text_encoder = resolve_encoder(text_encoder)
        self.tfidf_dim = tfidf_dim
        self.max_steps = max_steps
        self.generation_seed = generation_seed

    def cache_key(self) -> str:
        return (f"icu-sepsis-v2|n{self.num_patients}|x{self.explore_fraction}|e{self.explore_eps}|"
                f"r{self.unreliable_rate}|w{self.worse_rate}|z{self.noise_std}|nz{self.note_noise_std}|"
                f"{self.text_encoder}{self.tfidf_dim}|T{self.max_steps}|g{self.generation_seed}")

    def build_steps(self) -> dict[str, np.ndarray]:
        mdp = load_icu_sepsis()
        rng = np.random.default_rng(self.generation_seed)
        cohort = simulate_cohort(mdp, self.num_patients, rng, self.explore_fraction, self.explore_eps,
                                 self.unreliable_rate, self.worse_rate, self.max_steps)
        states, actions, length, outcome = cohort["states"], cohort["actions"], cohort["length"], cohort["outcome"]
        P = len(length)
        if P == 0:
            raise DataError("icu-sepsis: no finished episodes; raise max_steps")
        step_mask = np.arange(states.shape[1])[None, :] < length[:, None]
        patient, t = np.nonzero(step_mask)  # flattened (patient, t) in order
        state, mdp_action = states[patient, t], actions[patient, t]
        label = B.label_from_icu_sepsis(mdp_action)
        vec = mdp.state_vectors
        col_mean, col_std = vec[:NUM_PATIENT_STATES].mean(0), vec[:NUM_PATIENT_STATES].std(0)
        table_cols = [STATE_COLUMNS.index(c) for c in TABLE_COLUMNS]
        demo_cols = [STATE_COLUMNS.index(c) for c in DEMO_COLUMNS]
        vitals = vec[state][:, table_cols] + rng.normal(size=(len(state), len(table_cols))) * self.noise_std * col_std[table_cols]
        demo = vec[states[:, 0]][:, demo_cols] + rng.normal(size=(P, len(demo_cols))) * self.noise_std * col_std[demo_cols]
        # previous-medication features: previous fluid/vaso bins and their running means (0 at the first step)
        fluid, vaso = (mdp_action // B.NUM_BINS) / 4.0, (mdp_action % B.NUM_BINS) / 4.0
        first = t == 0
        prev_fluid = np.where(first, 0.0, np.r_[0.0, fluid[:-1]])
        prev_vaso = np.where(first, 0.0, np.r_[0.0, vaso[:-1]])
        start = np.flatnonzero(first)[patient]
        csum = lambda x: np.cumsum(x) - np.cumsum(x)[start] + x[start]  # noqa: E731  (per-patient cumsum)
        meds = np.stack([prev_fluid, prev_vaso, csum(prev_fluid) / np.maximum(t, 1), csum(prev_vaso) / np.maximum(t, 1)], 1)
        # notes: a second, independent noisy observation of the state, written up by the template
        observed = vec[state] + rng.normal(size=(len(state), vec.shape[1])) * self.note_noise_std * col_std
        texts = write_notes((observed - col_mean) / col_std.clip(1e-6), rng)
        unique, note_index = np.unique(np.array(texts, dtype=object), return_inverse=True)
        table, used = embed_texts(list(unique), self.text_encoder, self.cache_dir, self.tfidf_dim)
        return {"patient": patient.astype(np.int64), "t": t.astype(np.int64), "vitals": vitals.astype(np.float32),
                "meds": meds.astype(np.float32), "note": note_index.astype(np.int64), "note_table": table,
                "note_identity": text_identity(list(unique), used, self.tfidf_dim),
                "action": label.astype(np.int64), "state": state.astype(np.int64),
                "demo": demo.astype(np.float32), "died": (outcome != SURVIVAL).astype(np.float32),
                "group": cohort["group"].astype(np.int8), "worst": cohort["worst"][patient, t]}

    def extra_info(self) -> dict:
        a = self._arrays()
        died = a["died"][a["patient"]] == 1
        reference = reference_survival(load_icu_sepsis())
        return {"text_encoder": self.text_encoder, "mdp": "icu-sepsis 2.0.1",
                **{f"survival_{k}": round(v, 4) for k, v in reference.items()},
                "worst_share_deceased": round(float(a["worst"][died].mean()), 4) if died.any() else None,
                "worst_share_survivors": round(float(a["worst"][~died].mean()), 4)}
