"""The dtr batch format: the one definition that dtr datamodules produce and dtr models read.

One sample = one decision point of one patient: the last `L` steps (history length, left-padded; `mask` is
True on real steps, so position L-1 always holds the current step) and the clinician's action at that step.
Every tensor is batched (first dim B).

  vitals [B,L,Fv]   per-step tabular vitals/labs (float)
  meds   [B,L,Fm]   per-step previous-medication features (float)
  notes  [B,L,Fn]   per-step clinical-note embedding (float; zeros when a step has no note)
  demo   [B,Fd]     static demographics (float)
  mask   [B,L]      True on real steps
  action [B]        the clinician's action at the current step, 0..24 = vaso_bin*5 + fluid_bin (long)
  died   [B]        1.0 when the patient died (episode outcome), else 0.0
  state  [B]        the MDP state at the current step (long; -1 when the data has no MDP)
  cf_mortality [B,A] estimated death probability had action a been taken (the datamodule's outcome model,
                    paper App. B; NaN when unavailable)
  patient [B]       the patient's index (long; the conformal step splits its calibration pool by patient)
  calib  [B]        True for calibration-pool samples appended to the test set (the conformal step uses
                    them; every other test metric excludes them)
  reward [B], done [B], next_* (vitals/meds/notes/demo/mask) for offline RL: the next decision point of the
                    same patient; done=1 at the last step, where reward is +1 on survival (ICU-Sepsis reward).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

VITALS = "vitals"
MEDS = "meds"
NOTES = "notes"
DEMO = "demo"
MASK = "mask"
ACTION = "action"
DIED = "died"
STATE = "state"
CF_MORTALITY = "cf_mortality"
CALIB = "calib"
PATIENT = "patient"
REWARD = "reward"
DONE = "done"
STEP_KEYS = (VITALS, MEDS, NOTES, MASK)
NEXT = "next_"

NUM_ACTIONS = 25
NUM_BINS = 5


def action_index(vaso_bin, fluid_bin):
    """Label = vaso_bin * 5 + fluid_bin (SAFER notebook cell 20; ICU-Sepsis uses the same 5x5 grid)."""
    return vaso_bin * NUM_BINS + fluid_bin


def label_from_icu_sepsis(mdp_action):
    """ICU-Sepsis indexes actions fluid_bin * 5 + vaso_bin (checked: the second axis is 84 % zero under the
    clinicians' policy and tracks max_dose_vaso); SAFER's label is vaso_bin * 5 + fluid_bin. The map is a
    transpose of the 5x5 grid, so it is its own inverse (use it both ways)."""
    return (mdp_action % NUM_BINS) * NUM_BINS + mdp_action // NUM_BINS


icu_sepsis_from_label = label_from_icu_sepsis


class PolicySimulator(Protocol):
    """A known MDP in which a dtr model evaluates the policy it recommends exactly. The data side owns it and registers
    a loader in `contracts.registry.SIMULATORS` under the name its datamodule passes to models as `mdp`.

    States and actions use the simulator's own indexing (ICU-Sepsis: `icu_sepsis_from_label`); the first
    `num_patient_states` states are the patients' (the rest are terminal)."""

    num_patient_states: int
    initial: "np.ndarray"  # [S] start distribution
    transitions: "np.ndarray"  # [S, A, S]
    expert_policy: "np.ndarray"  # [S, A] the clinicians' policy

    def survival_probability(self, policy: "np.ndarray") -> float:
        """Exact probability of survival under a stationary policy [S or num_patient_states, A]."""
