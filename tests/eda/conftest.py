"""Fixtures of the eda tests: the embedded tiny sky130 subset, and the real library/circuits with Yosys and OpenSTA
(CI installs both; the skip is for machines without them)."""
from __future__ import annotations

import shutil

import pytest

from datamodules.eda.gatesize import TINY_LIBERTY
from datamodules.eda.liberty import read_liberty
from datamodules.eda.sta import LibraryTensors

needs_tools = pytest.mark.skipif(shutil.which("yosys") is None or shutil.which("sta") is None,
                                 reason="yosys and OpenSTA (`apt-get install yosys opensta`) are not installed")


@pytest.fixture(scope="session")
def tiny_library():
    return read_liberty(TINY_LIBERTY, None)


@pytest.fixture(scope="session")
def tiny_tensors(tiny_library):
    return LibraryTensors.from_library(tiny_library)
