"""Multi-agent environments as rollout datamodules (importing registers them)."""
from datamodules.marl import mpe  # noqa: F401

# the public names: `from datamodules.marl import CollectTreasure`
from datamodules.marl.mpe import CollectTreasure, SimpleSpread
__all__ = ["CollectTreasure", "SimpleSpread"]
