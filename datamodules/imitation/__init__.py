"""Carbon-aware microgrid operation for imitation learning (importing registers the datasets)."""
from datamodules.imitation import microgrid  # noqa: F401

# the public names: `from datamodules.imitation import CityLearnMicrogrid`
from datamodules.imitation.microgrid import CityLearnMicrogrid, SyntheticMicrogrid
__all__ = ["CityLearnMicrogrid", "SyntheticMicrogrid"]
