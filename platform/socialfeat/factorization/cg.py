"""ALS row updates by a few conjugate-gradient steps per row, warm-started (as implicit does), in numba."""

import numba
import numpy as np


@numba.njit(inline="always", fastmath=True, cache=True)
def _dot(a, b):
    total = np.float32(0.0)
    for f in range(a.shape[0]):
        total += a[f] * b[f]
    return total


@numba.njit(cache=True)
def rows_csr(rows, cols, values, n_rows):
    """(indptr, indices, data) of the entries grouped by row, each row's entries in their original
    order (duplicates kept, as Eq. 3 counts them), the values in their own dtype. A counting sort:
    O(entries), where sorting unsorted item ids costs seconds on a 12M-entry log."""
    indptr = np.zeros(n_rows + 1, np.int64)
    for row in rows:
        indptr[row + 1] += 1
    for row in range(n_rows):
        indptr[row + 1] += indptr[row]
    next_slot = indptr[:-1].copy()
    indices = np.empty(len(rows), np.int32)
    data = np.empty(len(rows), values.dtype)
    for k in range(len(rows)):
        slot = next_slot[rows[k]]
        indices[slot] = cols[k]
        data[slot] = values[k]
        next_slot[rows[k]] = slot + 1
    return indptr, indices, data


# Not cached on disk: this kernel loaded from numba's cache gave factors up to 5.7e-6 away from the same
# kernel compiled in the process (fastmath), so a run's numbers depended on whether an earlier process had
# compiled it. Compiled in every process (~2 s), every run of a seed gives the same factors.
@numba.njit(parallel=True, fastmath=True, cache=False)
def cg_rows(indptr, indices, values, factors, other, reg, steps):
    """Move every row x of `factors` towards argmin sum_k (v_k - x.y_k)^2 + reg |x|^2 over its
    entries (CSR: indptr, indices into `other`, values) by `steps` CG steps from its current value.

    Never forms the d x d Gram matrix: A p = sum_k y_k (y_k.p) + reg p costs 2 L d per step, and
    the rows of `other` a row touches stay in cache. A row without entries goes to 0 (its exact
    solution) in one step when reg > 0. Each row is computed by one thread in a fixed order, so
    the result does not depend on the thread count."""
    dim = factors.shape[1]
    reg = np.float32(reg)
    for row in numba.prange(factors.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        x = factors[row].copy()
        residual = -reg * x  # b - A x, with b = sum_k v_k y_k
        for k in range(start, end):
            y = other[indices[k]]
            error = np.float32(values[k]) - _dot(y, x)
            for f in range(dim):
                residual[f] += error * y[f]
        direction = residual.copy()
        product = np.empty_like(x)
        norm = _dot(residual, residual)
        for _ in range(steps):
            if norm < 1e-20:
                break
            for f in range(dim):
                product[f] = reg * direction[f]
            for k in range(start, end):
                y = other[indices[k]]
                along = _dot(y, direction)
                for f in range(dim):
                    product[f] += along * y[f]
            step = norm / _dot(direction, product)
            for f in range(dim):
                x[f] += step * direction[f]
                residual[f] -= step * product[f]
            new_norm = _dot(residual, residual)
            ratio = new_norm / norm
            for f in range(dim):
                direction[f] = residual[f] + ratio * direction[f]
            norm = new_norm
        factors[row] = x
