"""Gate sizing on open circuits with open EDA tools (importing registers the datasets): Liberty reading, Yosys
mapping, placement, a differentiable PyTorch STA checked against OpenSTA, and the circuits sizers work on."""
from datamodules.eda import gatesize  # noqa: F401

# the public names: `from datamodules.eda import ISCAS85GateSizing`
from datamodules.eda.gatesize import EPFLGateSizing, ISCAS85GateSizing, SyntheticGateSizing
__all__ = ["EPFLGateSizing", "ISCAS85GateSizing", "SyntheticGateSizing"]
