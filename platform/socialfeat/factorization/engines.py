"""Factorisation engines behind one interface: fit(entries, shape, cfg) -> (user_factors, item_factors).

`als` and `sgd` minimise the paper's Eq. 3 over the observed entries (positives = 1, sampled
negatives = 0):  sum_(j,i) (V_ij - x_j.y_i)^2 + lambda (sum_j |x_j|^2 + sum_i |y_i|^2).
lambda is unscaled: each factor row is penalised once, however many entries it has (a heavy user
is regularised as much as a light one); `implicit_als` (Hu, Koren & Volinsky) and `implicit_bpr`
learn from the positives alone, with implicit's own regularisation conventions.
"""

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from socialfeat.config import FactorizationConfig
from socialfeat.factorization.cg import cg_rows, rows_csr
from socialfeat.factorization.hogwild import sgd_epoch

log = logging.getLogger(__name__)
EpochCallback = Callable[[int, np.ndarray, np.ndarray], None]
BLOCK_ELEMENTS = 1 << 24  # gathered factor elements per ALS block: bounds memory at ~64 MB


@dataclass
class Entries:
    """Observed training entries of the users x items matrix."""

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    values: np.ndarray  # float32
    n_users: int
    n_items: int

    @classmethod
    def of(cls, entries, n_users: int, n_items: int) -> "Entries":
        """Every row of an entries frame (columns user, item, value), without copying its columns."""
        columns = (entries[name].to_numpy(dtype) for name, dtype in (("user", np.int32), ("item", np.int32)))
        return cls(*columns, entries["value"].to_numpy(np.float32), n_users, n_items)

    @classmethod
    def train_of(cls, entries, n_users: int, n_items: int) -> "Entries":
        """The `fold == "train"` rows of a sampled-entries frame (columns user, item, value, fold)."""
        train = (entries["fold"] == "train").to_numpy()
        users, items = entries["user"].to_numpy(np.int32)[train], entries["item"].to_numpy(np.int32)[train]
        return cls(users, items, entries["value"].to_numpy(np.float32)[train], n_users, n_items)


def _initial(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal((rows, dim)) * 0.1).astype(np.float32)


def _row_blocks(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int, dim: int):
    """Rows grouped into blocks of similar entry counts, each padded to a (B, L) matrix of columns
    (padding points at column n_cols, a zero row) so one batched solve handles a whole block."""

    order = np.argsort(rows, kind="stable")
    sorted_cols, sorted_values = cols[order], values[order]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    by_count = np.argsort(counts, kind="stable")
    by_count = by_count[counts[by_count] > 0]
    sorted_counts = counts[by_count]
    blocks, i = [], 0
    while i < len(by_count):
        # a block ends where rows get 25% longer than its first: padding wastes at most a quarter
        j = int(np.searchsorted(sorted_counts, sorted_counts[i] * 1.25 + 8, side="right"))
        j = min(j, i + max(1, BLOCK_ELEMENTS // (dim * sorted_counts[i])))
        while j - i > 1 and (j - i) * sorted_counts[j - 1] * dim > BLOCK_ELEMENTS:
            j = i + (j - i) // 2
        members = by_count[i:j]
        width = counts[members[-1]]
        offsets = starts[members][:, None] + np.arange(width)[None, :]
        valid = np.arange(width)[None, :] < counts[members][:, None]
        safe = np.where(valid, offsets, 0)
        block_cols = np.where(valid, sorted_cols[safe], n_cols)
        block_values = np.where(valid, sorted_values[safe], 0.0).astype(np.float32)
        blocks.append((torch.from_numpy(members), torch.from_numpy(block_cols), torch.from_numpy(block_values)))
        i = j
    return blocks


def _solve_rows(blocks, other, n_rows: int, reg: float):
    """Closed-form ALS update of every row: x = (Y_O^T Y_O + lambda I)^-1 Y_O^T v.

    A row with fewer entries L than dimensions d is solved in its L x L dual form,
    x = Y_O^T (Y_O Y_O^T + lambda I)^-1 v (the push-through identity), which is exact and far
    cheaper for the long tail of light users and rare items (needs lambda > 0)."""

    dim = other.shape[1]
    padded = torch.cat([other, other.new_zeros(1, dim)])
    result = other.new_zeros(n_rows, dim)
    for members, cols, values in blocks:
        gathered = padded[cols.to(other.device)]  # B x L x d; padding rows are zero
        values = values.to(other.device).unsqueeze(-1)
        width = gathered.shape[1]
        if width < dim and reg > 0:
            kernel = gathered @ gathered.transpose(1, 2)
            kernel.diagonal(dim1=1, dim2=2).add_(reg)
            rows = gathered.transpose(1, 2) @ torch.linalg.solve(kernel, values)
        else:
            gram = gathered.transpose(1, 2) @ gathered
            gram.diagonal(dim1=1, dim2=2).add_(reg)
            rows = torch.linalg.solve(gram, gathered.transpose(1, 2) @ values)
        result[members.to(other.device)] = rows.squeeze(-1)
    return result


def _compact(values: np.ndarray) -> np.ndarray:
    """The values as int8 where that holds every one exactly (the sampled entries' 0 and 1), else float32: the
    two CSR copies of the entries then hold a byte a value instead of four (1.2 GB less at 200M entries)."""
    small = values.astype(np.int8)
    return small if np.array_equal(small, values) else values.astype(np.float32, copy=False)


def fit_als(entries: Entries, cfg: FactorizationConfig, on_epoch: EpochCallback | None = None):
    """ALS: on a CPU, `cg_steps` warm-started conjugate-gradient steps per row and half-epoch (numba);
    on a GPU, or with cg_steps 0, the exact batched closed-form solve in torch."""

    if torch.cuda.is_available() or cfg.cg_steps == 0:
        return _fit_als_exact(entries, cfg, on_epoch, device="cuda" if torch.cuda.is_available() else "cpu")

    rng = np.random.default_rng(cfg.seed)
    users, items = _initial(entries.n_users, cfg.dim, rng), _initial(entries.n_items, cfg.dim, rng)
    values = _compact(entries.values)
    by_user = rows_csr(entries.users, entries.items, values, entries.n_users)
    by_item = rows_csr(entries.items, entries.users, values, entries.n_items)
    for epoch in range(cfg.epochs):
        cg_rows(*by_user, users, items, cfg.reg, cfg.cg_steps)
        cg_rows(*by_item, items, users, cfg.reg, cfg.cg_steps)
        if on_epoch:
            on_epoch(epoch, users, items)
    return users, items


def _fit_als_exact(entries: Entries, cfg: FactorizationConfig, on_epoch: EpochCallback | None, device: str):

    rng = np.random.default_rng(cfg.seed)
    user_blocks = _row_blocks(entries.users, entries.items, entries.values, entries.n_users, entries.n_items, cfg.dim)
    item_blocks = _row_blocks(entries.items, entries.users, entries.values, entries.n_items, entries.n_users, cfg.dim)
    users = torch.from_numpy(_initial(entries.n_users, cfg.dim, rng)).to(device)
    items = torch.from_numpy(_initial(entries.n_items, cfg.dim, rng)).to(device)
    for epoch in range(cfg.epochs):
        users = _solve_rows(user_blocks, items, entries.n_users, cfg.reg)
        items = _solve_rows(item_blocks, users, entries.n_items, cfg.reg)
        if on_epoch:
            on_epoch(epoch, users.cpu().numpy(), items.cpu().numpy())
    return users.cpu().numpy(), items.cpu().numpy()


def fit_sgd(entries: Entries, cfg: FactorizationConfig, on_epoch: EpochCallback | None = None):
    """The paper's parallel asynchronous SGD: threads update shared factors without locks (Hogwild)."""

    rng = np.random.default_rng(cfg.seed)
    users = _initial(entries.n_users, cfg.dim, rng)
    items = _initial(entries.n_items, cfg.dim, rng)
    # lambda |x|^2 once per row, spread over the row's entries so an epoch matches Eq. 3's gradient
    user_reg = (cfg.reg / np.maximum(np.bincount(entries.users, minlength=entries.n_users), 1)).astype(np.float32)
    item_reg = (cfg.reg / np.maximum(np.bincount(entries.items, minlength=entries.n_items), 1)).astype(np.float32)
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(entries.users)).astype(np.int64)
        rate = np.float32(cfg.learning_rate / (1.0 + 0.1 * epoch))
        threads = numba.get_num_threads()
        sgd_epoch(entries.users, entries.items, entries.values, order, users, items, user_reg, item_reg, rate, threads)
        if on_epoch:
            on_epoch(epoch, users, items)
    return users, items


def _positives(entries: Entries) -> sp.csr_matrix:
    positive = entries.values > 0
    return sp.csr_matrix(
        (entries.values[positive], (entries.users[positive], entries.items[positive])),
        shape=(entries.n_users, entries.n_items),
        dtype=np.float32,
    )


def _implicit(model, entries: Entries, on_epoch: EpochCallback | None):

    def callback(iteration, *_progress):  # ALS passes (elapsed, loss); BPR (elapsed, correct, skipped)
        if on_epoch:
            on_epoch(iteration, model.user_factors, model.item_factors)

    with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it
        model.fit(_positives(entries), show_progress=False, callback=callback)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def fit_implicit_als(entries: Entries, cfg: FactorizationConfig, on_epoch: EpochCallback | None = None):
    from implicit.cpu.als import AlternatingLeastSquares  # implicit loads only for its own engines

    with threadpool_limits(1, "blas"):  # checked when the model is made
        model = AlternatingLeastSquares(
            factors=cfg.dim, regularization=cfg.reg, alpha=cfg.alpha, iterations=cfg.epochs, random_state=cfg.seed
        )
    return _implicit(model, entries, on_epoch)


def fit_implicit_bpr(entries: Entries, cfg: FactorizationConfig, on_epoch: EpochCallback | None = None):
    from implicit.cpu.bpr import BayesianPersonalizedRanking  # implicit loads only for its own engines

    model = BayesianPersonalizedRanking(
        factors=cfg.dim,
        learning_rate=cfg.learning_rate,
        regularization=cfg.reg,
        iterations=cfg.epochs,
        random_state=cfg.seed,
    )
    return _implicit(model, entries, on_epoch)


ENGINES = {"als": fit_als, "sgd": fit_sgd, "implicit_als": fit_implicit_als, "implicit_bpr": fit_implicit_bpr}


def fit(entries: Entries, cfg: FactorizationConfig, on_epoch: EpochCallback | None = None):
    """(user_factors, item_factors) as float32 numpy arrays, by the configured engine."""
    factors = ENGINES[cfg.engine](entries, cfg, on_epoch)
    # numba compiling a kernel inside the engine leaves a reference cycle that holds the engine's finished
    # frame, and with it the CSR copies of the entries (5 GB at 100M views), until the collector runs
    gc.collect()
    return factors
