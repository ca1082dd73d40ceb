"""common.layers: the row-chunked CPU matmul (plain and against a transposed weight) equals one product,
values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import layers as L


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("rows", [1, L.ROW_CHUNK_ABOVE, L.ROW_CHUNK_ABOVE + 1, 3 * L.ROW_CHUNK])
def test_row_chunked_matmul_matches_one_product(rows, transposed):
    """Above ROW_CHUNK_ABOVE rows the product runs in blocks (padding the last one); below it, in one call.
    Both must equal numpy's float64 product, and the gradients those of the plain ``x @ w`` (``x @ w.T`` for a
    transposed [out, in] weight)."""
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 12)).astype(np.float32)
    w = rng.normal(size=(5, 12) if transposed else (12, 5)).astype(np.float32)
    dense_w = w.T if transposed else w
    got = np.asarray(jax.jit(lambda x, w: L.matmul(x, w, transposed=transposed))(x, w))
    np.testing.assert_allclose(got, x.astype(np.float64) @ dense_w.astype(np.float64), rtol=0, atol=1e-4)

    g = rng.normal(size=(rows, 5)).astype(np.float32)
    ours = jax.grad(lambda x, w: jnp.sum(L.matmul(x, w, transposed=transposed) * g), argnums=(0, 1))(x, w)
    plain = jax.grad(lambda x, w: jnp.sum(jnp.dot(x, w.T if transposed else w) * g), argnums=(0, 1))(x, w)
    assert len(ours) == len(plain) == 2
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)
    if transposed:  # the low-precision path (padded single rows on CPU) contracts the same axis
        low = L.matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), transposed=True)
        np.testing.assert_allclose(np.asarray(low, np.float32), got, rtol=0.05, atol=0.1)


def test_row_chunked_matmul_keeps_leading_dims():
    x = np.ones((2, L.ROW_CHUNK_ABOVE, 3), np.float32)  # 2 * 4096 rows once flattened: chunked
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = L.matmul(x, w)
    assert y.shape == (2, L.ROW_CHUNK_ABOVE, 2)
    np.testing.assert_array_equal(np.asarray(y[1, -1]), w.sum(0))
