"""scikit-learn's estimator API checks over both estimators, for every solver.

No expected failures: scikit-learn lists none for its own MLPs (``PER_ESTIMATOR_XFAIL_CHECKS`` has
no MLP entry), and every check passes here. (The sample-weight equivalence check uses 15 rows, so
'auto' batches hold the whole data set and the stochastic solvers pass it too.)

Default thread counts are limited to one for the session (see conftest.py for why).
"""
from sklearn.utils.estimator_checks import parametrize_with_checks

from cprop import MLPClassifier, MLPRegressor

ESTIMATORS = [
    MLPClassifier(max_iter=100, random_state=0),
    MLPClassifier(solver="sgd", max_iter=100, random_state=0),
    MLPClassifier(solver="lbfgs", max_iter=100, random_state=0),
    MLPRegressor(max_iter=100, random_state=0),
    MLPRegressor(solver="sgd", max_iter=100, random_state=0),
    MLPRegressor(solver="lbfgs", max_iter=100, random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
