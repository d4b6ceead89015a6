"""Cooperative multi-agent RL (importing registers the models): IPPO, MAPPO, VDN, QMIX, ROMA-style roles, CORD, and a
uniformly random team (the floor)."""
from lightning_modules.marl import cord, ppo, qlearning, random_team, roma  # noqa: F401

# the public names: `from lightning_modules.marl import CORD`
from lightning_modules.marl.cord import CORD
from lightning_modules.marl.ppo import IPPO, MAPPO
from lightning_modules.marl.qlearning import QMIX, VDN
from lightning_modules.marl.random_team import RandomTeam
from lightning_modules.marl.roma import ROMA
__all__ = ["CORD", "IPPO", "MAPPO", "QMIX", "ROMA", "RandomTeam", "VDN"]
