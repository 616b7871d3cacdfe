"""Cost of the input block (periodic PBLD embedding + scale) per epoch, against the same network
without it and against a plain network as wide as the block's output (the block's own cost
apart from the wider first layer).  One Adam epoch of mini-batches of 256 over a 4000 x 30
float32 table, 3 x 256 ReLU layers; median of repeats, at 1 and 2 threads.

    flock /tmp/cprop-bench.lock python benchmarks/input_block.py
"""
import platform
import time

import numpy as np

import cprop
from cprop._engine import Network, OptimizerState


def epoch_seconds(net, X, Y, repeats):
    params = net.init_params(np.random.RandomState(0))
    st = OptimizerState("adam", net.n_params, net.dtype, learning_rate=1e-3)
    order = np.random.RandomState(1).permutation(X.shape[0])
    run = net.epochs(params, st, X, Y, None, 256, 1e-4)
    run(order)                                  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(order)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(repeats=7):
    rng = np.random.default_rng(0)
    n, F = 4000, 30
    X = rng.standard_normal((n, F)).astype(np.float32)
    Y = rng.standard_normal((n, 1)).astype(np.float32)
    block = [{"kind": "periodic", "n_frequencies": 16, "n_outputs": 3}, "scale"]
    print(f"cpu: {platform.processor() or platform.machine()}; kernel path: "
          f"{cprop.kernel_info()['name']}")
    for nt in (1, 2):
        plain = Network([F, 256, 256, 256, 1], "relu", "identity", np.float32, n_threads=nt)
        emb = Network([F, 256, 256, 256, 1], "relu", "identity", np.float32, n_threads=nt,
                      input_block=block,
                      lr_factors={"scale": 6.0, "periodic_first": 0.1, "periodic_second": 0.1},
                      parametrization="ntk")
        wide = Network([emb.dense_sizes[0], 256, 256, 256, 1], "relu", "identity", np.float32,
                       n_threads=nt)
        Xw = np.ascontiguousarray(np.repeat(X, 4, axis=1))
        t_plain = epoch_seconds(plain, X, Y, repeats)
        t_emb = epoch_seconds(emb, X, Y, repeats)
        t_wide = epoch_seconds(wide, Xw, Y, repeats)
        print(f"threads={nt}: no block {t_plain * 1e3:.1f} ms/epoch; periodic(16, 3)+scale block "
              f"{t_emb * 1e3:.1f} ms ({t_emb / t_plain:.2f}x); plain network with "
              f"{emb.dense_sizes[0]} inputs {t_wide * 1e3:.1f} ms (block's own cost "
              f"{(t_emb - t_wide) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
