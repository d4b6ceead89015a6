"""CTR datasets (family `ctr`): Adult, NYC flights, Criteo in the BARS layouts, the DeepCTR sample, and a synthetic
generator. Importing this package registers them."""
from datamodules.ctr import adult, criteo, flights, synthetic  # noqa: F401

# the public names: `from datamodules.ctr import Adult`
from datamodules.ctr.adult import Adult
from datamodules.ctr.criteo import CriteoSample, CriteoX1, CriteoX4
from datamodules.ctr.flights import NYCFlights
from datamodules.ctr.synthetic import SyntheticCTR
__all__ = ["Adult", "CriteoSample", "CriteoX1", "CriteoX4", "NYCFlights", "SyntheticCTR"]
