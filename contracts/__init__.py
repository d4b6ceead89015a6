"""What both ground floors share, so that neither imports the other: the batch format of each family
(`contracts.batch`), the name registries (`contracts.registry`), atomic file writes (`contracts.atomic`),
marl's rollout/policy protocol (`contracts.batch.marl`), and what a run's callbacks may raise to the runner
(`contracts.run`).

`lightning_modules` and `datamodules` import this package; it imports neither of them (nor `benchmarks` or
`sweeps`), and nothing here imports torch, so the command line can read the registry index without it.
"""
