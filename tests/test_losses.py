"""famekit.losses.softmax_cross_entropy equals F.cross_entropy on the full logits."""

import pytest
import torch
import torch.nn.functional as F

from famekit.losses import softmax_cross_entropy


def reference(queries, table, targets):
    return F.cross_entropy((queries @ table.T).float(), targets)


@pytest.mark.parametrize("chunk_elements", [1, 7 * 13, 50 * 13, 10**9])
def test_loss_and_gradients_equal_full_logits(chunk_elements):
    torch.manual_seed(0)
    q = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)  # [R, d]
    t = torch.randn(13, 8, dtype=torch.float64, requires_grad=True)  # [V, d]
    y = torch.randint(0, 13, (50,))
    y[:5] = 12  # repeated targets, including the last column
    loss = softmax_cross_entropy(q, t, y, chunk_elements=chunk_elements)
    gq, gt = torch.autograd.grad(loss * 3.0, (q, t))
    q2, t2 = q.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    ref = reference(q2, t2, y)
    rq, rt = torch.autograd.grad(ref * 3.0, (q2, t2))
    # float64 inputs: the softmax runs in float32 (as the model's loss does), hence 1e-6
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(gq, rq, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gt, rt, rtol=1e-5, atol=1e-7)
    assert gq.dtype == q.dtype and gt.dtype == t.dtype


def test_gradcheck_float64_softmax_path():
    # the chunked backward (recomputed logits, in-place softmax - onehot) against finite
    # differences; float32 softmax limits the precision, so a loose tolerance
    torch.manual_seed(1)
    q = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 4, 4, 2, 1, 3])
    assert torch.autograd.gradcheck(
        lambda a, b: softmax_cross_entropy(a, b, y, chunk_elements=10).double(), (q, t),
        eps=1e-3, atol=1e-4, rtol=1e-3)


def test_large_logits_are_stable():
    q = torch.tensor([[100.0, 0.0], [-100.0, 0.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([1, 1])
    loss = softmax_cross_entropy(q, t, y, chunk_elements=3)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference(q, t, y).item(), rel=1e-6)


def test_shape_errors_are_named():
    with pytest.raises(ValueError, match=r"queries \[R, d\]"):
        softmax_cross_entropy(torch.zeros(3, 4), torch.zeros(5, 3), torch.zeros(3, dtype=torch.long))


def test_model_loss_uses_same_value_as_hooked_full_logits():
    # the model's chunked path and its hook path (full logits + F.cross_entropy) agree
    from famekit.model import ModelConfig, build_model

    torch.manual_seed(0)
    for kind in ("sasrec", "fame"):
        model = build_model(ModelConfig(n_items=30, kind=kind, max_len=6, d_model=16,
                                        n_heads=2, n_experts=2, dropout=0.0)).eval()
        ids = torch.randint(0, 31, (4, 6))
        ids[:, 0] = 0
        targets = torch.randint(1, 31, (4, 6)) * (ids != 0)
        plain = model(ids, targets)
        with model.hooks(fwd_hooks=[("hook_logits", lambda x, hook: x)]):
            hooked = model(ids, targets)
        assert plain.item() == pytest.approx(hooked.item(), rel=1e-5)


def test_autocast_runs_the_matmuls_in_its_dtype():
    # the CUDA training path uses bf16 autocast; CPU autocast exercises the same branch
    torch.manual_seed(2)
    q = torch.randn(40, 16, requires_grad=True)
    t = torch.randn(30, 16, requires_grad=True)
    y = torch.randint(0, 30, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = softmax_cross_entropy(q, t, y, chunk_elements=300)
        ref = F.cross_entropy((q @ t.T).float(), y)  # autocast: the matmul in bf16
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)
    gq, gt = torch.autograd.grad(loss, (q, t))
    rq, rt = torch.autograd.grad(ref, (q, t))
    assert gq.dtype == torch.float32 and gt.dtype == torch.float32
    torch.testing.assert_close(gq, rq, rtol=5e-2, atol=5e-3)
    torch.testing.assert_close(gt, rt, rtol=5e-2, atol=5e-3)


def test_the_default_is_the_fast_chunked_path():
    # several chunks for any catalogue of more than a few thousand rows x items
    from famekit import losses

    assert losses.CHUNK_ELEMENTS == 1 << 21


def test_chunked_loss_is_bit_reproducible_with_two_threads():
    # Beauty-sized scoring (12k items): several 8 MiB chunks, multi-threaded GEMMs, fresh
    # buffers each time, as in training
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        q0, t0 = torch.randn(700, 64), torch.randn(12_101, 64) * 0.1
        y = torch.randint(0, 12_101, (700,))
        results = []
        for _ in range(3):
            q, t = q0.clone().requires_grad_(), t0.clone().requires_grad_()
            loss = softmax_cross_entropy(q, t, y)
            loss.backward()
            results.append((loss.detach(), q.grad, t.grad))
        for other in results[1:]:
            assert all(torch.equal(a, b) for a, b in zip(results[0], other))
    finally:
        torch.set_num_threads(threads)


def test_mkl_reproducibility_mode_is_on():
    # famekit sets MKL_CBWR=AUTO before torch loads MKL (see famekit/__init__.py)
    import ctypes
    import os

    import famekit  # noqa: F401

    assert os.environ.get("MKL_CBWR")
    if not torch.backends.mkl.is_available():
        pytest.skip("this torch build has no MKL (its BLAS needs no such mode)")
    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    getter = getattr(lib, "mkl_serv_cbwr_get", None)
    if getter is None:
        pytest.skip("this MKL build does not export its reproducibility query")
    if os.environ["MKL_CBWR"] == "AUTO":
        assert getter(1) == 2  # MKL_CBWR_AUTO: MKL took the setting
