"""CTR prediction models (family `ctr`): XCrossNet and the classic feature-interaction baselines.
Importing this package registers them."""
from lightning_modules.ctr import (  # noqa: F401
    autoint, dcn, dcnv2, deepfm, finalmlp, fm, ipnn, lr, wide_deep, xcrossnet, xdeepfm,
)

# the public names: `from lightning_modules.ctr import AutoInt`
from lightning_modules.ctr.autoint import AutoInt
from lightning_modules.ctr.dcn import DCN
from lightning_modules.ctr.dcnv2 import DCNv2
from lightning_modules.ctr.deepfm import DeepFM
from lightning_modules.ctr.finalmlp import FinalMLP
from lightning_modules.ctr.fm import FM
from lightning_modules.ctr.ipnn import IPNN
from lightning_modules.ctr.lr import LR
from lightning_modules.ctr.wide_deep import WideDeep
from lightning_modules.ctr.xcrossnet import XCrossNet
from lightning_modules.ctr.xdeepfm import XDeepFM
__all__ = ["AutoInt", "DCN", "DCNv2", "DeepFM", "FM", "FinalMLP", "IPNN", "LR", "WideDeep", "XCrossNet", "XDeepFM"]
