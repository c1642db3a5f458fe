"""The lock-free parallel SGD epoch (Hogwild, Recht et al. 2011) compiled with numba."""

import numba
import numpy as np


# the thread count comes in as an argument: numba.get_num_threads() inside the kernel types numba's own
# overload of it, which calls print, and fails to compile once Ray has replaced builtins.print in the process
@numba.njit(parallel=True, fastmath=True)
def sgd_epoch(users, items, values, order, user_factors, item_factors, user_reg, item_reg, rate, n_threads):
    """One pass over the entries in `order` by `n_threads` threads; each takes a slice and writes shared
    factors without locks: collisions are rare on sparse data, and that is what makes it fast."""
    chunk = (len(order) + n_threads - 1) // n_threads
    dim = user_factors.shape[1]
    for thread in numba.prange(n_threads):
        for position in range(thread * chunk, min(len(order), (thread + 1) * chunk)):
            entry = order[position]
            user, item = users[entry], items[entry]
            prediction = np.float32(0.0)
            for f in range(dim):
                prediction += user_factors[user, f] * item_factors[item, f]
            error = values[entry] - prediction
            for f in range(dim):
                x, y = user_factors[user, f], item_factors[item, f]
                user_factors[user, f] = x + rate * (error * y - user_reg[user] * x)
                item_factors[item, f] = y + rate * (error * x - item_reg[item] * y)
