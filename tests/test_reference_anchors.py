"""Anchor the NumPy reference itself with hand-computed cases (expected values are literals)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference as ref

REPO = Path(__file__).resolve().parents[1]


def a(x):
    return np.array(x, dtype=np.float64)


# ---------------------------------------------------------------- formats: TT


def test_tt_rank1_is_kron_in_c_order():
    # rank 1, in (2,2), out (2,2): W = kron(A, B) since i = 2*i1 + i2, j = 2*j1 + j2
    A = a([[1, 2], [3, 4]])
    B = a([[0, 1], [1, 0]])
    cores = [A.reshape(1, 2, 2, 1), B.reshape(1, 2, 2, 1)]
    expected = a([[0, 1, 0, 2], [1, 0, 2, 0], [0, 3, 0, 4], [3, 0, 4, 0]])
    np.testing.assert_array_equal(ref.tt_to_dense(cores), expected)
    np.testing.assert_array_equal(ref.to_dense("tt", cores, (2, 2), (2, 2)), expected)


def test_tt_rank1_rectangular_modes():
    # in (2,3), out (1,2): W = kron(A (2x1), B (3x2))
    A = a([[1], [2]])
    B = a([[1, 0], [0, 1], [1, 1]])
    cores = [A.reshape(1, 2, 1, 1), B.reshape(1, 3, 2, 1)]
    expected = a([[1, 0], [0, 1], [1, 1], [2, 0], [0, 2], [2, 2]])
    np.testing.assert_array_equal(ref.tt_to_dense(cores), expected)


def test_tt_rank2_column():
    # in (2,2), out (1,1), ranks (1,2,1): W[2*i1+i2] = G1row(i1) . G2col(i2)
    G1 = np.zeros((1, 2, 1, 2))
    G1[0, 0, 0] = [1, 2]
    G1[0, 1, 0] = [3, -1]
    G2 = np.zeros((2, 2, 1, 1))
    G2[:, 0, 0, 0] = [2, 0]
    G2[:, 1, 0, 0] = [1, 1]
    np.testing.assert_array_equal(ref.tt_to_dense([G1, G2]), a([[2], [3], [6], [2]]))


def test_tt_rank2_in_and_out_modes():
    # in (2,1), out (1,2): W[i1, j2] = G1[0,i1,0,:] . G2[:,0,j2,0] = [[1,2],[3,-1]] @ [[2,1],[0,1]]
    G1 = np.zeros((1, 2, 1, 2))
    G1[0, :, 0, :] = [[1, 2], [3, -1]]
    G2 = np.zeros((2, 1, 2, 1))
    G2[:, 0, :, 0] = [[2, 1], [0, 1]]
    np.testing.assert_array_equal(ref.tt_to_dense([G1, G2]), a([[2, 3], [6, 2]]))


def test_tt_rejects_open_ends():
    with pytest.raises(ValueError):
        ref.tt_to_dense([np.ones((2, 2, 2, 1)), np.ones((1, 2, 2, 2))])


# ---------------------------------------------------------------- formats: TR


def _tr_hand_cores():
    # ranks (2, 2, 2); in (2,1), out (1,2)
    G1 = np.zeros((2, 2, 1, 2))
    G1[:, 0, 0, :] = [[1, 0], [0, 1]]
    G1[:, 1, 0, :] = [[1, 1], [2, 3]]
    G2 = np.zeros((2, 1, 2, 2))
    G2[:, 0, 0, :] = [[1, 2], [0, 1]]
    G2[:, 0, 1, :] = [[0, 1], [1, 0]]
    return [G1, G2]


def test_tr_trace_by_hand():
    # (0,0): tr(I @ [[1,2],[0,1]]) = 2          (0,1): tr([[0,1],[1,0]]) = 0
    # (1,0): tr([[1,3],[2,7]]) = 8               (1,1): tr([[1,1],[3,2]]) = 3
    cores = _tr_hand_cores()
    np.testing.assert_array_equal(ref.tr_to_dense(cores), a([[2, 0], [8, 3]]))
    np.testing.assert_array_equal(ref.to_dense("tr", cores, (2, 1), (1, 2)), a([[2, 0], [8, 3]]))


def test_tr_with_unit_ring_rank_equals_tt():
    rng = np.random.default_rng(0)
    cores = [rng.standard_normal(s) for s in [(1, 2, 3, 2), (2, 3, 1, 3), (3, 2, 2, 1)]]
    np.testing.assert_allclose(ref.tr_to_dense(cores), ref.tt_to_dense(cores), atol=1e-14)


def test_tr_rejects_open_ring():
    with pytest.raises(ValueError):
        ref.tr_to_dense([np.ones((2, 2, 2, 3)), np.ones((3, 2, 2, 1))])


# ---------------------------------------------------------------- formats: Tucker, CP


def test_tucker2_by_hand():
    # in (C_in=2, S=2), out (C_out=2,); factors U1 (2,2), None, U3 (2,1); core (2,2,1)
    # M[c,s] = U1 @ [[1,2],[0,3]] = [[1,2],[1,5]];  W[(c,s), o] = M[c,s] * u3[o]
    U1 = a([[1, 0], [1, 1]])
    core = np.zeros((2, 2, 1))
    core[:, :, 0] = [[1, 2], [0, 3]]
    U3 = a([[1], [2]])
    expected = a([[1, 2], [2, 4], [1, 2], [5, 10]])
    np.testing.assert_array_equal(ref.tucker_to_dense(core, [U1, None, U3], (2, 2), (2,)), expected)
    np.testing.assert_array_equal(
        ref.to_dense("tucker", (core, [U1, None, U3]), (2, 2), (2,)), expected
    )


def test_tucker_full_matrix_is_u_c_vt():
    rng = np.random.default_rng(1)
    U, C, V = rng.standard_normal((3, 2)), rng.standard_normal((2, 4)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(ref.tucker_to_dense(C, [U, V], (3,), (5,)), U @ C @ V.T, atol=1e-14)


def test_cp_rank1_outer():
    W = ref.cp_to_dense([a([[1], [2]]), a([[1], [0], [-1]])], (2,), (3,))
    np.testing.assert_array_equal(W, a([[1, 0, -1], [2, 0, -2]]))


def test_cp_rank2_matrix():
    # W[i,j] = sum_r A[i,r] B[j,r] = A @ B.T
    A, B = a([[1, 2], [0, 1]]), a([[1, 1], [3, 0]])
    np.testing.assert_array_equal(ref.cp_to_dense([A, B], (2,), (2,)), a([[3, 3], [1, 0]]))


def test_cp_rank2_three_factors():
    U1, U2, U3 = a([[1, 0], [1, 1]]), a([[1, 2], [0, 1]]), a([[1, -1]])
    W = ref.to_dense("cp", [U1, U2, U3], (2, 2), (1,))
    np.testing.assert_array_equal(W, a([[1], [0], [-1], [-1]]))


def test_kernel_matrix_view_by_hand():
    # K (C_out=2, C_in=1, 1, 2): rows of W are (c, y, x) in C order
    K = np.zeros((2, 1, 1, 2))
    K[0, 0, 0] = [1, 2]
    K[1, 0, 0] = [3, 4]
    W = ref.kernel_to_matrix(K)
    np.testing.assert_array_equal(W, a([[1, 3], [2, 4]]))
    np.testing.assert_array_equal(ref.matrix_to_kernel(W, (1, 2)), K)
    K2 = np.random.default_rng(2).standard_normal((4, 3, 3, 2))
    np.testing.assert_array_equal(ref.matrix_to_kernel(ref.kernel_to_matrix(K2), (3, 2)), K2)


# ---------------------------------------------------------------- contraction


def test_matmul_and_einsum_hand_case():
    A, B = a([[1, 2], [3, 4]]), a([[0, 1], [1, 0]])
    cores = [A.reshape(1, 2, 2, 1), B.reshape(1, 2, 2, 1)]
    x = np.ones(4)
    # column sums of kron(A, B)
    np.testing.assert_array_equal(
        ref.einsum_reference(x, "tt", cores, (2, 2), (2, 2)), a([4, 4, 6, 6])
    )
    np.testing.assert_array_equal(ref.matmul_reference(x, ref.tt_to_dense(cores)), a([4, 4, 6, 6]))


def _random_case(fmt, rng):
    if fmt == "tt":
        inm, outm = (2, 3, 2), (3, 1, 2)
        cores = [rng.standard_normal(s) for s in [(1, 2, 3, 2), (2, 3, 1, 3), (3, 2, 2, 1)]]
    elif fmt == "tr":
        inm, outm = (2, 3, 2), (3, 1, 2)
        cores = [rng.standard_normal(s) for s in [(2, 2, 3, 2), (2, 3, 1, 3), (3, 2, 2, 2)]]
    elif fmt == "tucker":
        inm, outm = (2, 3, 4), (5,)
        core = rng.standard_normal((2, 3, 3, 2))
        cores = (
            core,
            [
                rng.standard_normal((2, 2)),
                None,
                rng.standard_normal((4, 3)),
                rng.standard_normal((5, 2)),
            ],
        )
    else:
        inm, outm = (2, 3), (2, 2)
        cores = [rng.standard_normal((n, 3)) for n in inm + outm]
    return inm, outm, cores


@pytest.mark.parametrize("fmt", ["tt", "tr", "tucker", "cp"])
def test_einsum_matches_dense_matmul(fmt):
    rng = np.random.default_rng(3)
    inm, outm, cores = _random_case(fmt, rng)
    W = ref.to_dense(fmt, cores, inm, outm)
    x = rng.standard_normal((2, 3, int(np.prod(inm))))
    y = ref.einsum_reference(x, fmt, cores, inm, outm)
    assert y.shape == (2, 3, int(np.prod(outm)))
    np.testing.assert_allclose(y, ref.matmul_reference(x, W), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- conv2d


X44 = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)  # x[y, x] = 4y + x


def test_conv_ones_kernel_valid():
    K = np.ones((1, 1, 3, 3))
    np.testing.assert_array_equal(ref.conv2d_reference(X44, K)[0, 0], a([[45, 54], [81, 90]]))


def test_conv_is_cross_correlation_not_flipped():
    K = np.zeros((1, 1, 3, 3))
    K[0, 0, 0, 0] = 1  # top-left tap picks x[oy, ox]
    np.testing.assert_array_equal(ref.conv2d_reference(X44, K)[0, 0], a([[0, 1], [4, 5]]))


def test_conv_padding_stride():
    K = np.ones((1, 1, 3, 3))
    y = ref.conv2d_reference(X44, K, padding=1)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0] == 10
    y = ref.conv2d_reference(X44, K, stride=2, padding=1)
    np.testing.assert_array_equal(y[0, 0], a([[10, 24], [51, 90]]))
    np.testing.assert_array_equal(
        ref.conv2d_reference(X44, K, padding="same"), ref.conv2d_reference(X44, K, padding=1)
    )


def test_conv_dilation():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    y = ref.conv2d_reference(x, np.ones((1, 1, 3, 3)), dilation=2)
    np.testing.assert_array_equal(y, a([[[[108]]]]))  # sum of x at even (y, x)


def test_conv_groups_and_bias():
    x = a([1, 2]).reshape(1, 2, 1, 1)
    K = a([1, 2, 3, 4]).reshape(4, 1, 1, 1)
    y = ref.conv2d_reference(x, K, groups=2)
    np.testing.assert_array_equal(y.ravel(), a([1, 2, 6, 8]))
    y = ref.conv2d_reference(x, K, groups=2, bias=a([0, 1, 0, 1]))
    np.testing.assert_array_equal(y.ravel(), a([1, 3, 6, 9]))


def test_conv_equals_unfold_times_matrix_view():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 6))
    K = rng.standard_normal((4, 3, 3, 2))
    y = ref.conv2d_reference(x, K)
    Ho, Wo = 3, 5
    cols = np.empty((2, Ho * Wo, 3 * 3 * 2))
    for oy in range(Ho):
        for ox in range(Wo):
            cols[:, oy * Wo + ox] = x[:, :, oy : oy + 3, ox : ox + 2].reshape(2, -1)  # (c, y, x)
    y_mat = ref.matmul_reference(cols, ref.kernel_to_matrix(K))  # (N, L, C_out)
    np.testing.assert_allclose(y, y_mat.transpose(0, 2, 1).reshape(2, 4, Ho, Wo), atol=1e-12)


def test_conv_groups_equal_split_convs():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 4, 4))
    K = rng.standard_normal((6, 2, 3, 3))
    y = ref.conv2d_reference(x, K, padding=1, groups=2)
    y0 = ref.conv2d_reference(x[:, :2], K[:3], padding=1)
    y1 = ref.conv2d_reference(x[:, 2:], K[3:], padding=1)
    np.testing.assert_allclose(y, np.concatenate([y0, y1], axis=1), atol=1e-12)


# ---------------------------------------------------------------- decompositions


def test_tt_svd_full_rank_exact():
    rng = np.random.default_rng(6)
    inm, outm = (2, 3, 2), (3, 2, 2)
    W = rng.standard_normal((12, 12))
    cores, disc = ref.tt_svd(W, inm, outm)
    assert [g.shape[1:3] for g in cores] == [(2, 3), (3, 2), (2, 2)]
    assert cores[0].shape[0] == cores[-1].shape[3] == 1
    np.testing.assert_allclose(ref.tt_to_dense(cores), W, atol=1e-12)
    assert disc < 1e-20


def test_tt_svd_recovers_rank1():
    A, B = a([[1, 2], [3, 4]]), a([[0, 1], [1, 0]])
    W = np.kron(A, B)
    for kw in ({"max_rank": 1}, {"rtol": 1e-12}):
        cores, disc = ref.tt_svd(W, (2, 2), (2, 2), **kw)
        assert [g.shape for g in cores] == [(1, 2, 2, 1), (1, 2, 2, 1)]
        np.testing.assert_allclose(ref.tt_to_dense(cores), W, atol=1e-12)
        assert disc < 1e-20


def test_tt_svd_truncation_bound():
    rng = np.random.default_rng(7)
    inm, outm = (2, 2, 3), (2, 3, 2)
    W = rng.standard_normal((12, 12))
    for kw in ({"max_rank": 2}, {"rtol": 0.5}, {"max_rank": [3, 2], "rtol": 0.3}):
        cores, disc = ref.tt_svd(W, inm, outm, **kw)
        err = np.linalg.norm(W - ref.tt_to_dense(cores))
        assert disc > 0
        assert err <= math.sqrt(disc) * (1 + 1e-10)
        if "max_rank" not in kw:  # with a rank cap on top, only the sqrt(disc) bound holds
            assert err <= kw["rtol"] * np.linalg.norm(W)
        if kw.get("max_rank") == 2:
            assert max(g.shape[3] for g in cores) <= 2


@pytest.mark.parametrize("r0", [1, 2, 3])
def test_tr_svd_full_rank_exact(r0):
    rng = np.random.default_rng(8)
    inm, outm = (2, 3, 2), (3, 2, 2)
    W = rng.standard_normal((12, 12))
    cores = ref.tr_svd(W, inm, outm, r0=r0)
    assert cores[0].shape[0] == cores[-1].shape[3] == r0
    np.testing.assert_allclose(ref.tr_to_dense(cores), W, atol=1e-12)


def test_tr_svd_recovers_rank1_with_ring_rank1():
    W = np.kron(a([[1, 2], [3, 4]]), a([[0, 1], [1, 0]]))
    cores = ref.tr_svd(W, (2, 2), (2, 2), r0=1, max_rank=1)
    np.testing.assert_allclose(ref.tr_to_dense(cores), W, atol=1e-12)


def test_hosvd_full_rank_exact_and_truncated_shapes():
    rng = np.random.default_rng(9)
    T = rng.standard_normal((2, 3, 7))  # mode 2 wider than the other two together
    core, factors = ref.hosvd(T, [None, 3, 7])
    assert core.shape == (2, 3, 7)
    np.testing.assert_allclose(
        ref.tucker_to_dense(core, factors, (2, 3), (7,)).reshape(T.shape), T, atol=1e-12
    )
    for U in factors:
        np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-12)
    core, factors = ref.hosvd(T, [1, 2, 2])
    assert core.shape == (1, 2, 2) and [U.shape for U in factors] == [(2, 1), (3, 2), (7, 2)]


def test_hosvd_recovers_rank1_tensor():
    T = np.einsum("i,j,k->ijk", a([1, 2]), a([1, -1, 3]), a([2, 0]))
    core, factors = ref.hosvd(T, 1)
    np.testing.assert_allclose(
        ref.tucker_to_dense(core, factors, (2, 3), (2,)).reshape(T.shape), T, atol=1e-12
    )


# ---------------------------------------------------------------- gradients


def _cube(p):
    return sum(np.sum(v**3) for v in p.values())


def test_gradients_of_sum_of_cubes():
    params = {"a": a([[1.0, -2.0], [0.5, 3.0]]), "b": a([0.25, -1.5, 2.0])}
    expected = {k: 3 * v**2 for k, v in params.items()}
    cd = ref.central_difference_grad(_cube, params)
    cs = ref.complex_step_grad(_cube, params)
    for k in params:
        np.testing.assert_allclose(cd[k], expected[k], rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(cs[k], expected[k], rtol=1e-15, atol=0)


def test_hvp_of_quadratic():
    A = a([[2, 1, 0], [1, 3, -1], [0, -1, 4]])
    theta, v = a([1, -1, 2]), a([0.5, 2, -1])

    def grad_fn(p):  # grad of 0.5 θᵀAθ
        return {"theta": A @ p["theta"]}

    hv = ref.central_difference_hvp(grad_fn, {"theta": theta}, {"theta": v})
    np.testing.assert_allclose(hv["theta"], a([3, 7.5, -6]), rtol=1e-10)  # A @ v by hand


def test_cross_entropy_by_hand():
    logits = a([[0.0, math.log(3.0)], [2.0, 2.0]])
    labels = np.array([0, 1])
    # sample 0: p0 = 1/4 -> log 4; sample 1: p1 = 1/2 -> log 2; mean = 1.5 log 2
    assert ref.cross_entropy(logits, labels) == pytest.approx(1.5 * math.log(2.0), rel=1e-14)
    assert ref.cross_entropy(logits + 1000.0, labels) == pytest.approx(
        1.5 * math.log(2.0), rel=1e-12
    )


def _mlp_params(rng, n_in=6, h=5, c=3):
    return {
        "fc1.weight": rng.standard_normal((n_in, h)),
        "fc1.bias": rng.standard_normal(h),
        "fc2.weight": rng.standard_normal((h, c)),
        "fc2.bias": rng.standard_normal(c),
    }


def test_mlp_complex_step_matches_central_difference():
    rng = np.random.default_rng(10)
    params = _mlp_params(rng)
    x, y = rng.standard_normal((4, 6)), np.array([0, 2, 1, 2])

    def loss(p):
        return ref.cross_entropy(ref.dense_mlp_forward(p, x), y)

    cs, cd = ref.complex_step_grad(loss, params), ref.central_difference_grad(loss, params)
    for k in params:
        np.testing.assert_allclose(cs[k], cd[k], rtol=1e-6, atol=1e-8)


def test_tt_mlp_equals_dense_mlp_with_reconstructed_weight():
    rng = np.random.default_rng(11)
    inm, outm = (2, 3), (1, 5)
    cores = [rng.standard_normal((1, 2, 1, 2)), rng.standard_normal((2, 3, 5, 1))]
    params = _mlp_params(rng)
    tt_params = {
        "fc1.cores.0": cores[0],
        "fc1.cores.1": cores[1],
        **{k: v for k, v in params.items() if k != "fc1.weight"},
    }
    dense_params = dict(params, **{"fc1.weight": ref.tt_to_dense(cores)})
    x = rng.standard_normal((4, 6))
    np.testing.assert_allclose(
        ref.tt_mlp_forward(tt_params, x, inm, outm),
        ref.dense_mlp_forward(dense_params, x),
        atol=1e-12,
    )


def test_synflow_objective_by_hand():
    p = {
        "fc1.weight": a([[1, 2], [3, 4]]),
        "fc1.bias": a([0, 0]),
        "fc2.weight": a([[1], [1]]),
        "fc2.bias": a([0.5]),
    }
    # ones @ W1 = [4, 6]; relu; @ W2 = 10; + 0.5
    assert ref.synflow_objective(ref.dense_mlp_forward, p, (1, 2)) == pytest.approx(10.5)


# ---------------------------------------------------------------- independence


def test_reference_imports_only_numpy():
    code = (
        "import sys, reference; "
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'tedepr', 'opt_einsum', 'torch', 'jax', 'jaxlib', 'scipy'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"reference pulled in: {out.stdout.strip()}"
