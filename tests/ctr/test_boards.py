"""The ctr boards and the xcrossnet paper record load, name only registered models, and say what they run on."""
import pytest

from benchmarks.boards import load_board, load_paper
from benchmarks.runner import RunSpec, resolve

CTR_BOARDS = ["ctr-adult", "ctr-criteo-x1", "ctr-synthetic"]


@pytest.mark.parametrize("name", CTR_BOARDS)
def test_board_resolves_every_model(name):
    board = load_board(name)
    assert board.family == "ctr" and board.primary_metric == "auc"
    for model in board.models:
        resolve(board, RunSpec(board.name, model, 0))


def test_criteo_x1_board_labels_the_stand_in_and_the_foreign_split():
    board = load_board("ctr-criteo-x1")
    assert "stand-in" in board.title and board.dataset_args["standin"] == "auto"
    bars = [p for p in board.published if p.source.startswith("BARS")]
    paper = [p for p in board.published if p.source.startswith("XCrossNet paper")]
    assert {p.model for p in bars} >= {"lr", "fm", "deepfm", "dcnv2", "finalmlp"}
    assert any(p.model == "xcrossnet" and p.metric == "auc" and p.value == 0.8068 for p in paper)
    assert all("different Criteo split" in p.protocol for p in paper)


def test_paper_record():
    paper = load_paper("xcrossnet")
    assert "xcrossnet" in paper.models and paper.boards == ["ctr-criteo-x1"]
