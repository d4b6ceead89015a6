"""Sweeps: Optuna studies over each model's declared search space, with the same budget for every model.

- `storage.py`  which Optuna storage a URL names (SQLite / PostgreSQL via RDBStorage, `journal://` files),
                 the refusal of SQLite for parallel workers, one clear error for an unreachable storage;
- `pruning.py`  the pruner (MedianPruner on the board's primary validation metric) and, inside a trial's
                 subprocess, optuna-integration's Lightning pruning callback bound to that trial;
- `study.py`    study names derived from board + model + protocol, the study loop each worker runs
                 (one trial = one fresh subprocess), heartbeats and retries, and `tuned_params` for `run --tuned`;
- `report.py`   best trials, parameter importances and the optimisation-history plot;
- `cli.py`      `paperboard sweep`.
"""
