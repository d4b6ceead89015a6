"""The reference side of the ctr speed comparison: DeepCTR-Torch (github.com/shenweichen/DeepCTR-Torch) trained on
the same Adult split, batch size and threads as our models, in its own virtual environment.

DeepCTR-Torch is never a dependency of paperboard. `ensure_venv()` creates `<cache>/perf/deepctr-venv` with
`python -m venv --system-site-packages` (so it sees this interpreter's torch, numpy, scikit-learn and tqdm, the
package's whole dependency list) and runs `pip install deepctr-torch==VERSION --no-deps` into it, once.
`python -m benchmarks.perf.ctr_reference --model M ...`, run by that venv's interpreter from the repository root,
prints one JSON line: seconds per epoch of DeepCTR-Torch's own `fit` loop (wall and CPU), the same model's plain
step (forward, its loss with its regularisation, backward, Adam) rows/s, and the validation AUC after the epochs.

Each board model maps to the DeepCTR-Torch model and arguments that build the same network at our board's
shapes (`REFERENCE`). What cannot match: DeepCTR-Torch feeds numeric fields raw to the DNN and the linear part
(no numeric embeddings), so its attention, CIN, FM and cross layers see the 8 categorical fields where ours see 14
fields (the 6 numeric ones embedded, FuxiCTR style); its DNN weights start N(0, 1e-4^2), ours Xavier-normal; its
loss is a batch sum, ours a mean (Adam is invariant to that scale, the L2 terms' weight is not). FinalMLP and
XCrossNet have no DeepCTR-Torch model (XCrossNet's official code is a fork of DeepCTR-Torch 0.2.4, not on PyPI).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VERSION = "0.3.0"

# board model -> (DeepCTR-Torch class, its keyword arguments, our model's arguments for the same network)
REFERENCE = {
    "lr": ("DeepFM", {"use_fm": False, "dnn_hidden_units": ()}, {}),
    "fm": ("DeepFM", {"dnn_hidden_units": ()}, {}),
    "wide_deep": ("WDL", {"dnn_hidden_units": (400, 400, 400)}, {}),
    "deepfm": ("DeepFM", {"dnn_hidden_units": (400, 400, 400)}, {}),
    "dcn": ("DCN", {"cross_num": 3, "cross_parameterization": "vector", "dnn_hidden_units": (400, 400, 400),
                    "l2_reg_cross": 0.0}, {}),
    "dcnv2": ("DCN", {"cross_num": 3, "cross_parameterization": "matrix", "dnn_hidden_units": (500, 500, 500),
                      "dnn_dropout": 0.1, "l2_reg_cross": 0.0}, {}),
    "xdeepfm": ("xDeepFM", {"cin_layer_size": (32, 32, 32), "cin_split_half": True, "cin_activation": "linear",
                            "dnn_hidden_units": (400, 400)}, {"cin_layer_units": [32, 32, 32],
                                                                   "cin_fields": "categorical"}),
    # DeepCTR-Torch's interacting layer keeps the embedding width (attention size = embedding size 10)
    "autoint": ("AutoInt", {"att_layer_num": 3, "att_head_num": 2, "att_res": True,
                            "dnn_hidden_units": (400, 400, 400)}, {"embed_dim": 10, "attention_dim": 10}),
    "ipnn": ("PNN", {"use_inner": True, "use_outter": False, "dnn_hidden_units": (400, 400, 400)}, {}),
}

# board models without a DeepCTR-Torch twin, measured on our side only (at the board's equal settings)
OURS_ONLY = {"finalmlp": {}, "xcrossnet": {"embed_dim": 10, "embedding_l2": 1e-5, "net_l2": 0.0}}


def venv_dir() -> Path:
    base = os.environ.get("PAPERBOARD_CACHE") or os.path.join(
        os.environ.get("PAPERBOARD_HOME") or os.path.expanduser("~/.cache/paperboard"), "cache")
    return Path(base) / "perf" / f"deepctr-torch-{VERSION}-venv"


def ensure_venv() -> Path:
    """The venv's python, with deepctr-torch installed; a RuntimeError that says why when it cannot be made."""
    root = venv_dir()
    python = root / "bin" / "python"
    check = [str(python), "-c", "import deepctr_torch, sys; print(deepctr_torch.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    root.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", "--system-site-packages", str(root)],
             [str(python), "-m", "pip", "install", "--quiet", "--no-deps", f"deepctr-torch=={VERSION}"], check]
    for cmd in steps:
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"cannot set up DeepCTR-Torch ({' '.join(cmd[:4])} ...): "
                               f"{(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    return python


def adult_arrays(data_dir: str | None, batch_size: int):
    """Our board's Adult split as numpy arrays: train / val (dense, sparse, label) and the field cardinalities."""
    from datamodules.ctr.adult import Adult
    from contracts.batch import ctr as B

    dm = Adult(data_dir=data_dir, batch_size=batch_size)
    dm.prepare_data()
    dm.setup()
    split = {name: {k: v.numpy() for k, v in getattr(dm, f"{name}_set").tensors.items()} for name in ("train", "val")}
    return split, dm.model_kwargs()["field_dims"], (B.DENSE, B.SPARSE, B.LABEL)


def measure(model_name: str, data_dir: str | None, batch_size: int, epochs: int, threads: int, seed: int) -> dict:
    import numpy as np
    import torch
    import deepctr_torch
    from deepctr_torch import models as deepctr_models
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(threads)
    split, field_dims, (DENSE, SPARSE, LABEL) = adult_arrays(data_dir, batch_size)
    cls_name, kwargs, _ = REFERENCE[model_name]
    num_dense = split["train"][DENSE].shape[1]
    columns = ([SparseFeat(f"C{j}", vocabulary_size=d, embedding_dim=10) for j, d in enumerate(field_dims)]
               + [DenseFeat(f"I{m}", 1) for m in range(num_dense)])

    def inputs(part: dict) -> dict:
        x = {f"C{j}": part[SPARSE][:, j] for j in range(len(field_dims))}
        x.update({f"I{m}": part[DENSE][:, m] for m in range(num_dense)})
        return x

    x_train, y_train = inputs(split["train"]), split["train"][LABEL]
    x_val, y_val = inputs(split["val"]), split["val"][LABEL]
    args = dict(kwargs)
    if cls_name == "PNN":
        model = getattr(deepctr_models, cls_name)(columns, task="binary", device="cpu", seed=seed, **args)
    else:
        model = getattr(deepctr_models, cls_name)(columns, columns, task="binary", device="cpu", seed=seed, **args)
    model.compile("adam", "binary_crossentropy", metrics=[])  # Adam, lr 1e-3; no per-batch metrics

    wall, cpu = [], []
    for _ in range(epochs):  # DeepCTR-Torch's own loop: TensorDataset + DataLoader, its loss and L2, Adam
        w, c = time.perf_counter(), time.process_time()
        model.fit(x_train, y_train, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
        wall.append(time.perf_counter() - w), cpu.append(time.process_time() - c)
    auc = float(roc_auc_score(y_val, model.predict(x_val, batch_size=8192).ravel()))

    # the model alone, over our loader's batches: forward, its loss (batch sum, as its fit) + L2, backward, Adam
    dense = torch.from_numpy(split["train"][DENSE])
    sparse = torch.from_numpy(split["train"][SPARSE]).float()
    order = [f"C{j}" for j in range(len(field_dims))] + [f"I{m}" for m in range(num_dense)]
    starts = [model.feature_index[name][0] for name in order]
    x_all = torch.empty(len(dense), len(order))
    x_all[:, starts[:len(field_dims)]] = sparse
    x_all[:, starts[len(field_dims):]] = dense
    y_all = torch.from_numpy(y_train)
    model.train()
    perm = torch.randperm(len(x_all))
    w, c = time.perf_counter(), time.process_time()
    for i in range(0, len(x_all), batch_size):
        idx = perm[i:i + batch_size]
        pred = model(x_all[idx]).squeeze(-1)
        loss = model.loss_func(pred, y_all[idx], reduction="sum") + model.get_regularization_loss() + model.aux_loss
        model.optim.zero_grad()
        loss.backward()
        model.optim.step()
    plain_wall, plain_cpu = time.perf_counter() - w, time.process_time() - c
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # one batch's forward and backward, as ours is counted
        idx = perm[:batch_size]
        loss = model.loss_func(model(x_all[idx]).squeeze(-1), y_all[idx], reduction="sum")
        (loss + model.get_regularization_loss() + model.aux_loss).backward()
    model.optim.zero_grad()
    rows = len(y_train)
    steady = slice(1, None) if epochs > 1 else slice(None)  # the first epoch pays the warm-up
    return {"impl": f"DeepCTR-Torch {deepctr_torch.__version__} {cls_name}", "model": model_name, "rows": rows,
            "epochs": epochs, "s_per_epoch": statistics.median(wall[steady]),
            "cpu_s_per_epoch": statistics.median(cpu[steady]),
            "fit_rows_per_s": rows / statistics.median(wall[steady]),
            "plain_rows_per_s": rows / plain_wall, "plain_cpu_s": plain_cpu, "val_auc": auc,
            "train_flops_per_row": counter.get_total_flops() / len(idx),
            "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(REFERENCE))
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.data_dir, args.batch_size, args.epochs, args.threads, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
