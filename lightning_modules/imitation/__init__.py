"""Imitation learning for carbon-aware microgrid operation (importing registers the models): behaviour cloning (on
the whole log and on its top episodes), GAIL, a PAIL-style reconstruction with its ablations, and an oracle that
learns from the true reward (the ceiling)."""
from lightning_modules.imitation import bc, gail, oracle, pail  # noqa: F401

# the public names: `from lightning_modules.imitation import PAIL`
from lightning_modules.imitation.bc import BehaviourCloning
from lightning_modules.imitation.gail import GAIL
from lightning_modules.imitation.oracle import RLOracle
from lightning_modules.imitation.pail import PAIL
__all__ = ["BehaviourCloning", "GAIL", "PAIL", "RLOracle"]
