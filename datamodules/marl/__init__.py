"""Multi-agent environments as rollout datamodules (importing registers them)."""
from datamodules.marl import mpe, vmas_env  # noqa: F401

# the public names: `from datamodules.marl import CollectTreasure`
from datamodules.marl.mpe import CollectTreasure, SimpleSpread
from datamodules.marl.vmas_env import Dispersion
__all__ = ["CollectTreasure", "Dispersion", "SimpleSpread"]
