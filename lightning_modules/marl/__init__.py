"""Cooperative multi-agent RL (importing registers the models): IPPO, MAPPO, VDN, QMIX, ROMA-style roles, CORD."""
from lightning_modules.marl import cord, ppo, qlearning, roma  # noqa: F401
