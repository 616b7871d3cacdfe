"""Weight initialisers: scikit-learn's scaled uniform ('auto', the default) and the usual named ones.

Design
1. Every draw comes from the estimator's ``random_state`` (a numpy RandomState) in float64, layer by
   layer, and is cast to the model's dtype when packed, so float32 and float64 models start from
   the same values.
2. 'auto' is scikit-learn 1.9's draw exactly (same calls in the same order): per layer W then b
   from U(-r, r), r = sqrt(factor / (fan_in + fan_out)), factor 2 for logistic hidden units and 6
   otherwise.  With one activation per hidden layer, layer l uses the factor of the activation on
   its output (the output layer that of the last hidden layer), so a list of one repeated name
   draws what that name draws.  (A single name applies to every layer, as in scikit-learn, even
   with no hidden layer.)
3. The named initialisers draw only the weights and start the biases at 0 (as Keras and, for
   these schemes, most references do):
       glorot_uniform U(+-sqrt(6 / (fan_in + fan_out)))   glorot_normal N(0, 2 / (fan_in + fan_out))
       he_uniform     U(+-sqrt(6 / fan_in))               he_normal     N(0, 2 / fan_in)
       lecun_normal   N(0, 1 / fan_in)   (the one SELU's self-normalisation assumes)
       orthogonal     Q of the QR decomposition of a standard normal matrix, signs fixed by
                      diag(R) (Saxe et al. 2014), gain 1: orthonormal rows or columns.
   The normal ones are plain (untruncated) normals.
"""
import numpy as np

INITS = ("auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal",
         "orthogonal")


def _orthogonal(rs, fan_in, fan_out):
    rows, cols = max(fan_in, fan_out), min(fan_in, fan_out)
    Q, R = np.linalg.qr(rs.standard_normal((rows, cols)))
    Q *= np.where(np.diag(R) < 0, -1.0, 1.0)       # a unique Q: Haar-distributed
    return Q if fan_in >= fan_out else Q.T


def draw_layers(init, layer_sizes, activations, random_state):
    """Lists of float64 W_l (fan_in x fan_out) and b_l for ``layer_sizes``, drawn as ``init`` says.

    ``activations``: the hidden activation (one name, as scikit-learn takes it) or one name per
    hidden layer.

    Examples
    --------
    >>> import numpy as np
    >>> W, b = draw_layers("he_normal", [3, 4, 2], ["relu"], np.random.RandomState(0))
    >>> [w.shape for w in W], float(b[0].sum())
    ([(3, 4), (4, 2)], 0.0)
    """
    if init not in INITS:
        raise ValueError(f"init={init!r} is not an initialiser; expected one of {list(INITS)}.")
    s = [int(u) for u in layer_sizes]
    n_layers = len(s) - 1
    coefs, intercepts = [], []
    for l in range(n_layers):
        fi, fo = s[l], s[l + 1]
        if init == "auto":
            if isinstance(activations, str):
                act = activations          # scikit-learn: one factor for every layer
            else:
                act = activations[min(l, len(activations) - 1)] if len(activations) else None
            factor = 2.0 if act == "logistic" else 6.0
            bound = np.sqrt(factor / (fi + fo))
            coefs.append(random_state.uniform(-bound, bound, (fi, fo)))
            intercepts.append(random_state.uniform(-bound, bound, fo))
            continue
        if init == "glorot_uniform":
            bound = np.sqrt(6.0 / (fi + fo))
            W = random_state.uniform(-bound, bound, (fi, fo))
        elif init == "he_uniform":
            bound = np.sqrt(6.0 / fi)
            W = random_state.uniform(-bound, bound, (fi, fo))
        elif init == "glorot_normal":
            W = random_state.normal(0.0, np.sqrt(2.0 / (fi + fo)), (fi, fo))
        elif init == "he_normal":
            W = random_state.normal(0.0, np.sqrt(2.0 / fi), (fi, fo))
        elif init == "lecun_normal":
            W = random_state.normal(0.0, np.sqrt(1.0 / fi), (fi, fo))
        else:
            W = _orthogonal(random_state, fi, fo)
        coefs.append(W)
        intercepts.append(np.zeros(fo))
    return coefs, intercepts
