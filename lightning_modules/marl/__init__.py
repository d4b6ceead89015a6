"""Cooperative multi-agent RL (importing registers the models): IPPO, MAPPO, VDN, QMIX, ROMA-style roles, CORD, and a
uniformly random team (the floor)."""
from lightning_modules.marl import cord, ppo, qlearning, random_team, roma  # noqa: F401
