"""Imitation learning for carbon-aware microgrid operation (importing registers the models): behaviour cloning (on
the whole log and on its top episodes), GAIL, AIRL, a Decision Transformer conditioned on the SDG, IQL (offline
RL), a PAIL-style reconstruction with its ablations, an oracle that learns from the true reward, and the
perfect-foresight optimum (the exact ceiling)."""
from lightning_modules.imitation import airl, bc, decision_transformer, foresight, gail, iql, oracle, pail  # noqa: F401

# the public names: `from lightning_modules.imitation import PAIL`
from lightning_modules.imitation.airl import AIRL
from lightning_modules.imitation.bc import BehaviourCloning
from lightning_modules.imitation.decision_transformer import DecisionTransformer
from lightning_modules.imitation.foresight import ForesightOracle
from lightning_modules.imitation.gail import GAIL
from lightning_modules.imitation.iql import IQL
from lightning_modules.imitation.oracle import RLOracle
from lightning_modules.imitation.pail import PAIL
__all__ = ["AIRL", "BehaviourCloning", "DecisionTransformer", "ForesightOracle", "GAIL", "IQL", "PAIL", "RLOracle"]
