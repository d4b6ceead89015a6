"""CTR prediction models (family `ctr`): XCrossNet and the classic feature-interaction baselines.
Importing this package registers them."""
from lightning_modules.ctr import (  # noqa: F401
    autoint, dcn, dcnv2, deepfm, finalmlp, fm, ipnn, lr, wide_deep, xcrossnet, xdeepfm,
)
