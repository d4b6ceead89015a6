"""Multi-agent environments as rollout datamodules (importing registers them)."""
from datamodules.marl import mpe  # noqa: F401
