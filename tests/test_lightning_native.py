"""Lightning-native use: every registered class is importable from its family package (the path `paperboard list`
prints), and the README's plain-Trainer script and LightningCLI command both train SASRec on the synthetic dataset,
the CLI linking num_items and max_len from the datamodule into the model."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(name: str) -> str:
    """The fenced block right after `<!-- example: NAME ... -->` in the README."""
    match = re.search(rf"<!-- example: {re.escape(name)}\b.*?-->\s*```\w*\n(.*?)```", README.read_text(), re.S)
    assert match, f"README lost its {name} example"
    return match.group(1)


def test_every_registered_class_is_exported_by_its_family_package(capsys):
    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from benchmarks.cli import main, public_path
    from contracts.registry import DATASETS, MODELS, load_index

    for package, registry in (("lightning_modules", MODELS), ("datamodules", DATASETS)):
        for entry in registry.entries():
            family = importlib.import_module(f"{package}.{entry.family}")
            assert getattr(family, entry.cls.__name__, None) is entry.cls, \
                f"add `from {entry.cls.__module__} import {entry.cls.__name__}` to {package}/{entry.family}/__init__.py"
            assert entry.cls.__name__ in family.__all__
    assert main(["list", "models"]) == 0
    listed = capsys.readouterr().out
    for row in load_index()["models"]:
        path = public_path(row["import_path"])
        assert f" {path} " in listed
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is MODELS.get(row["name"]).cls


def test_the_readme_plain_trainer_script_trains_sasrec(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example("plain-trainer"), "README plain-trainer example", "exec"), {"__name__": "__main__"})
    ndcg = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 < ndcg <= 1.0


def test_the_readme_lightning_cli_command_trains_sasrec_with_linked_data_arguments(monkeypatch, tmp_path):
    from benchmarks.cli import main

    monkeypatch.chdir(tmp_path)
    argv = shlex.split(readme_example("lightning-cli").replace("\\\n", " "))
    assert argv[0] == "paperboard"
    assert main(argv[1:]) == 0
    run = next((tmp_path / "runs" / "cli" / "lightning_logs").glob("version_*"))
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())  # what the model was built with
    assert hparams["num_items"] == 50 and hparams["max_len"] == 10  # linked from the datamodule, never typed
    assert hparams["embed_dim"] == 32 and yaml.safe_load((run / "config.yaml").read_text())["model"]["embed_dim"] == 32
    assert list(run.glob("checkpoints/*.ckpt"))


def test_the_cli_refuses_a_model_and_dataset_of_different_families(capsys):
    from benchmarks.cli import main

    assert main(["fit", "--model", "sasrec", "--data", "synthetic-ctr"]) == 2
    assert "cannot train on synthetic-ctr" in capsys.readouterr().err
    assert main(["fit", "--model", "NoSuchModel", "--data", "synthetic-seqrec"]) == 2
    assert "unknown model 'NoSuchModel'" in capsys.readouterr().err
