"""ICU-Sepsis patient trajectories with clinical notes: the public stand-in for SAFER's MIMIC-III cohort.

The MDP of the PyPI package `icu-sepsis` (built from MIMIC-III with the AI-Clinician pipeline, the same 5x5
fluid x vasopressor action grid as SAFER) is rolled out with the clinicians' behaviour policy
(`env.expert_policy`); a fraction `explore_fraction` of patients instead take a uniformly random action with
probability `explore_eps` at each step (action diversity, and treatment that is less clinician-like). Per step:

- vitals: the state's 47-d cluster centre minus the static columns, plus Gaussian noise of `noise_std` x the
  column's std across states (the true state is never observed);
- meds (the paper's 4 previous-medication columns): previous fluid and vaso bins /4 and their running means;
- demographics (gender, age, Weight_kg, re_admission columns of the first state, with noise), static;
- a templated clinical note written from the *true* state with varied phrasing: the SOFA band, the two most
  abnormal variables, and a severity cue the tabular features lack (the bedside impression of haemodynamic
  severity and prognosis: bands of the clinicians' expected vasopressor and fluid intensity at that state
  and of the state's survival probability under their policy). `note_fidelity` is the probability that a note
  tells the truth (otherwise it describes a random state), so the note signal can be weakened or removed.

Notes are embedded with all-MiniLM-L6-v2 (offline package) or TF-IDF (see datamodules/dtr/notes.py); every
embedding is cached. Outcome: death when the episode ends in the death state, else survival.
"""
from __future__ import annotations

import numpy as np

from contracts.batch import dtr as B
from contracts.registry import register_dataset
from datamodules.base import DataError
from datamodules.dtr.base import DTRDataModule
from datamodules.dtr.mdp import NUM_PATIENT_STATES, STATE_COLUMNS, SURVIVAL, load_icu_sepsis, rollout, survival_probability
from datamodules.dtr.notes import embed_texts, resolve_encoder

DEMO_COLUMNS = ("gender", "age", "Weight_kg", "re_admission")
VITAL_COLUMNS = tuple(c for c in STATE_COLUMNS if c not in DEMO_COLUMNS)

_SOFA = (["SOFA {v:.0f}, minimal organ dysfunction", "low SOFA ({v:.0f})", "organ function largely preserved (SOFA {v:.0f})"],
         ["SOFA {v:.0f}, moderate organ dysfunction", "moderate SOFA of {v:.0f}", "some organ failure, SOFA {v:.0f}"],
         ["SOFA {v:.0f}, severe multi-organ dysfunction", "high SOFA ({v:.0f})", "multi-organ failure, SOFA {v:.0f}"])
_PRESSOR = (["no vasopressor requirement", "haemodynamically stable off pressors", "pressors not needed"],
            ["borderline pressures, low-dose pressor considered", "soft blood pressure", "mild vasopressor need"],
            ["on escalating vasopressors", "shock requiring norepinephrine", "pressor-dependent"],
            ["refractory shock on high-dose pressors", "profound vasoplegia, maximal pressors", "catecholamine-refractory shock"])
_FLUID = (["fluids held, euvolaemic", "no further fluid needed", "fluid balance adequate"],
          ["maintenance fluids", "modest fluid requirement", "small boluses given"],
          ["fluid responsive, bolus given", "ongoing resuscitation", "needs volume"],
          ["aggressive fluid resuscitation", "large-volume crystalloid", "massive fluid requirement"])
_PROGNOSIS = (["prognosis good", "expected to recover", "improving"],
              ["prognosis guarded", "uncertain course", "watch closely"],
              ["prognosis poor", "family meeting planned", "high risk of death"])
_HIGH = ("elevated {n}", "high {n}", "{n} up")
_LOW = ("low {n}", "decreased {n}", "{n} down")


def _bands(values: np.ndarray, k: int) -> np.ndarray:
    """Quantile bands 0..k-1 of values (over the patient states)."""
    edges = np.quantile(values, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def state_notes(variants: int, seed: int = 0) -> list[list[str]]:
    """notes[s][v]: the v-th phrasing of the note for patient state s (deterministic)."""
    mdp = load_icu_sepsis()
    S = NUM_PATIENT_STATES
    pi = mdp.expert_policy[:S].reshape(S, B.NUM_BINS, B.NUM_BINS)  # [s, fluid, vaso]
    bins = np.arange(B.NUM_BINS)
    vaso = (pi.sum(1) * bins).sum(1)
    fluid = (pi.sum(2) * bins).sum(1)
    _, value = survival_probability(mdp.expert_policy, mdp, per_state=True)
    vaso_band = np.where(vaso < 0.05, 0, 1 + _bands(vaso, 3))
    fluid_band, prog_band = _bands(fluid, 4), 2 - _bands(value, 3)
    sofa_band = np.digitize(mdp.sofa[:S], [6, 11])
    cols = [STATE_COLUMNS.index(c) for c in VITAL_COLUMNS]
    z = mdp.state_vectors[:S][:, cols]
    z = (z - z.mean(0)) / z.std(0).clip(1e-6)
    top = np.argsort(-np.abs(z), axis=1)[:, :2]
    rng = np.random.default_rng(seed)
    notes = []
    for s in range(S):
        row = []
        for _ in range(variants):
            pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
            parts = [pick(_SOFA[sofa_band[s]]).format(v=mdp.sofa[s]), pick(_PRESSOR[vaso_band[s]]),
                     pick(_FLUID[fluid_band[s]])]
            parts += [pick(_HIGH if z[s, j] > 0 else _LOW).format(n=VITAL_COLUMNS[j].replace("_", " "))
                      for j in top[s]]
            rng.shuffle(parts)
            row.append("; ".join(parts + [pick(_PROGNOSIS[prog_band[s]])]) + ".")
        notes.append(row)
    return notes


@register_dataset("icu-sepsis", family="dtr")
class ICUSepsisDataModule(DTRDataModule):
    mdp_name = "icu-sepsis"
    folder = "icu-sepsis"

    def __init__(self, data_dir: str | None = None, num_patients: int = 5000, explore_fraction: float = 0.2,
                 explore_eps: float = 0.5, noise_std: float = 1.0, note_fidelity: float = 1.0,
                 note_variants: int = 4, text_encoder: str = "auto", tfidf_dim: int = 64, max_steps: int = 60,
                 generation_seed: int = 0, history_len: int = 8, windows: str = "all",
                 split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), split_seed: int = 0,
                 outcome_model: bool = True, batch_size: int = 256, eval_batch_size: int = 1024,
                 num_workers: int = 0):
        super().__init__(data_dir, history_len, windows, split_fractions, split_seed, outcome_model, batch_size,
                         eval_batch_size, num_workers)
        if not 0 <= explore_fraction <= 1 or not 0 <= explore_eps <= 1 or not 0 <= note_fidelity <= 1:
            raise ValueError("explore_fraction, explore_eps and note_fidelity are probabilities in [0, 1]")
        self.num_patients = num_patients
        self.explore_fraction = explore_fraction
        self.explore_eps = explore_eps
        self.noise_std = noise_std
        self.note_fidelity = note_fidelity
        self.note_variants = note_variants
        self.text_encoder = resolve_encoder(text_encoder)
        self.tfidf_dim = tfidf_dim
        self.max_steps = max_steps
        self.generation_seed = generation_seed

    def cache_key(self) -> str:
        return (f"icu-sepsis|n{self.num_patients}|x{self.explore_fraction}|e{self.explore_eps}|z{self.noise_std}|"
                f"f{self.note_fidelity}|v{self.note_variants}|{self.text_encoder}{self.tfidf_dim}|T{self.max_steps}|"
                f"g{self.generation_seed}")

    def behaviour_policies(self) -> tuple[np.ndarray, np.ndarray]:
        """(clinicians' policy, exploring policy) over the 716 states, MDP indexing."""
        mdp = load_icu_sepsis()
        uniform = np.full_like(mdp.expert_policy, 1.0 / B.NUM_ACTIONS)
        uniform[NUM_PATIENT_STATES:] = 0
        return mdp.expert_policy, (1 - self.explore_eps) * mdp.expert_policy + self.explore_eps * uniform

    def build_steps(self) -> dict[str, np.ndarray]:
        mdp = load_icu_sepsis()
        rng = np.random.default_rng(self.generation_seed)
        clinician, exploring = self.behaviour_policies()
        n_explore = int(round(self.explore_fraction * self.num_patients))
        parts = [rollout(clinician, self.num_patients - n_explore, rng, mdp, self.max_steps)]
        if n_explore:
            parts.append(rollout(exploring, n_explore, rng, mdp, self.max_steps))
        length = np.concatenate([p["length"] for p in parts])
        outcome = np.concatenate([p["outcome"] for p in parts])
        T = max(p["actions"].shape[1] for p in parts)
        pad = lambda x, fill: np.pad(x, ((0, 0), (0, T - x.shape[1])), constant_values=fill)  # noqa: E731
        states = np.concatenate([pad(p["states"][:, :-1] if p["states"].shape[1] > 1 else p["states"], -1)
                                 for p in parts])[:, :T]
        actions = np.concatenate([pad(p["actions"], -1) for p in parts])
        keep = (outcome >= 0) & (length >= 1)  # drop episodes cut at max_steps (no outcome) [rare]
        order = rng.permutation(np.flatnonzero(keep))  # mix clinician and exploring patients
        states, actions, length, outcome = states[order], actions[order], length[order], outcome[order]
        P = len(order)
        if P == 0:
            raise DataError("icu-sepsis: no finished episodes; raise max_steps")
        # flatten (patient, t) in order
        step_mask = np.arange(T)[None, :] < length[:, None]
        patient, t = np.nonzero(step_mask)
        state, mdp_action = states[patient, t], actions[patient, t]
        label = B.label_from_icu_sepsis(mdp_action)
        vec = mdp.state_vectors
        col_std = vec[:NUM_PATIENT_STATES].std(0)
        vital_cols = [STATE_COLUMNS.index(c) for c in VITAL_COLUMNS]
        demo_cols = [STATE_COLUMNS.index(c) for c in DEMO_COLUMNS]
        vitals = vec[state][:, vital_cols] + rng.normal(size=(len(state), len(vital_cols))) * self.noise_std * col_std[vital_cols]
        demo = vec[states[:, 0]][:, demo_cols] + rng.normal(size=(P, len(demo_cols))) * self.noise_std * col_std[demo_cols]
        # previous-medication features: previous fluid/vaso bins and their running means (0 at the first step)
        fluid, vaso = (mdp_action // B.NUM_BINS) / 4.0, (mdp_action % B.NUM_BINS) / 4.0
        first = t == 0
        prev_fluid = np.where(first, 0.0, np.r_[0.0, fluid[:-1]])
        prev_vaso = np.where(first, 0.0, np.r_[0.0, vaso[:-1]])
        start = np.flatnonzero(first)[patient]
        csum = lambda x: np.cumsum(x) - np.cumsum(x)[start] + x[start]  # noqa: E731  (per-patient cumsum)
        meds = np.stack([prev_fluid, prev_vaso, csum(prev_fluid) / np.maximum(t, 1), csum(prev_vaso) / np.maximum(t, 1)], 1)
        # notes: the (true or, with prob 1 - fidelity, a random) state's note in a random phrasing
        note_state = np.where(rng.random(len(state)) < self.note_fidelity, state,
                              rng.integers(NUM_PATIENT_STATES, size=len(state)))
        note_id = note_state * self.note_variants + rng.integers(self.note_variants, size=len(state))
        # every state's every phrasing is embedded once (cached by text hash, shared by all dataset sizes)
        texts = [text for row in state_notes(self.note_variants) for text in row]
        table, _ = embed_texts(texts, self.text_encoder, self.cache_dir, self.tfidf_dim)
        note_index = note_id
        return {"patient": patient.astype(np.int64), "t": t.astype(np.int64), "vitals": vitals.astype(np.float32),
                "meds": meds.astype(np.float32), "note": note_index.astype(np.int64), "note_table": table,
                "action": label.astype(np.int64), "state": state.astype(np.int64),
                "demo": demo.astype(np.float32), "died": (outcome != SURVIVAL).astype(np.float32),
                "explored": (order >= self.num_patients - n_explore).astype(np.int8)}

    def extra_info(self) -> dict:
        return {"text_encoder": self.text_encoder, "mdp": "icu-sepsis 2.0.1",
                "clinician_survival_exact": round(survival_probability(load_icu_sepsis().expert_policy), 4)}
