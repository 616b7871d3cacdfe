"""scikit-learn's estimator API checks over both estimators, for every solver.

No expected failures: scikit-learn lists none for its own MLPs (``PER_ESTIMATOR_XFAIL_CHECKS`` has
no MLP entry), and every check passes here. (The sample-weight equivalence check uses 15 rows, so
'auto' batches hold the whole data set and the stochastic solvers pass it too.)

The lbfgs settings run with ``n_threads=1``: the engine's sparse first layer starts an OpenMP
region for every call with more than 16 rows however little work it holds, and on a loaded
2-core machine each region can cost tens of milliseconds, which made the two sparse checks take
~45 s each under L-BFGS's hundreds of calls. Thread-count invariance is tested in
test_mlp.py::test_threads_bitwise_identical.
"""
from sklearn.utils.estimator_checks import parametrize_with_checks

from cprop import MLPClassifier, MLPRegressor

ESTIMATORS = [
    MLPClassifier(max_iter=100, random_state=0),
    MLPClassifier(solver="sgd", max_iter=100, random_state=0),
    MLPClassifier(solver="lbfgs", max_iter=100, random_state=0, n_threads=1),
    MLPRegressor(max_iter=100, random_state=0),
    MLPRegressor(solver="sgd", max_iter=100, random_state=0),
    MLPRegressor(solver="lbfgs", max_iter=100, random_state=0, n_threads=1),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
