"""The dtr family: dynamic treatment recommendation (SAFER and its baselines) on patient trajectories."""
from lightning_modules.dtr import bc_mlp, cql, lstm, retain, safer  # noqa: F401  (registers the models)
