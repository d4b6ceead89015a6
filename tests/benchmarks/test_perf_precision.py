"""The speed benchmarks' bf16 path: the CTR bare step really runs its matrix products in bfloat16 (and in float32
without the flag), as Lightning's bf16-mixed precision does, and the matmul yardstick measures the dtype asked."""
import torch

from benchmarks.perf.ctr_throughput import bare_steps
from benchmarks.perf.matmul_peak import measure
from lightning_modules.ctr import DeepFM
from tests.ctr.helpers import planted, small_kwargs


def _linear_output_dtypes(bf16: bool) -> set[torch.dtype]:
    dm = planted(rows=1200, batch_size=256)
    torch.manual_seed(0)
    model = DeepFM(**dm.model_kwargs(), **small_kwargs(DeepFM))
    seen = set()
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.register_forward_hook(lambda mod, args, out: seen.add(out.dtype))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    bare_steps(model, optimiser, list(dm.train_dataloader())[:2], bf16=bf16)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed: the weights stay float32
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # and they were trained
    return seen


def test_bf16_bare_step_autocasts_the_matrix_products():
    assert _linear_output_dtypes(bf16=True) == {torch.bfloat16}
    assert _linear_output_dtypes(bf16=False) == {torch.float32}


def test_matmul_yardstick_measures_the_dtype_asked():
    result = measure(threads=1, sizes=(64,), dtype="bfloat16")
    assert result["dtype"] == "bfloat16" and result["peak_gflops"] > 0
    assert measure(threads=1, sizes=(64,))["dtype"] == "float32"
