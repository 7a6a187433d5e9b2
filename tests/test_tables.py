"""Your own table from the command line: real CSV files with text labels, text features, empty cells, reordered
columns, the target present, a pandas index, CRLF and a BOM; the preprocessing saved in the model, applied by
predict, evaluate and the ONNX export; the reader with and without pyarrow."""
import csv
import json

import numpy as np
import pytest

import fastnn as fn
from fastnn import io as fio
from fastnn import columns, selection, tables
from fastnn.preprocessing import DataError, Labels, Standardize, Table
from tests.conftest import run

PLANS = ("basic", "pro", "team")


def churn(n, seed=0):
    """A customer table: numbers with empty cells, a text column with empty cells, a true/false column, and a
    yes/no label that depends on all three."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, n).round(1)
    income = rng.normal(50_000, 15_000, n).round(0)
    plan = rng.choice(PLANS, n)
    mobile = rng.random(n) < 0.5
    score = (age - 50) / 15 + (income - 50_000) / 15_000 + np.select([plan == "pro", plan == "team"], [1.5, -1.5]) \
        + np.where(mobile, 0.7, -0.7)
    label = np.where(score + rng.normal(0, 0.3, n) > 0, "yes", "no")
    rows = []
    for i in range(n):
        rows.append({"age": "" if i % 9 == 4 else f"{age[i]}", "income": "NA" if i % 13 == 6 else f"{income[i]:.0f}",
                     "plan": "" if i % 11 == 3 else plan[i], "mobile": "true" if mobile[i] else "false",
                     "churned": label[i]})
    return rows


def write(path, rows, columns=None, index=False, crlf=False, bom=False):
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(([""] if index else []) + columns)
        for i, row in enumerate(rows):
            writer.writerow(([str(7 * i + 3)] if index else []) + [row[c] for c in columns])
    return path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cli(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by the CLI's defaults on a CRLF, BOM-prefixed churn table with a pandas index."""
    folder = tmp_path_factory.mktemp("churn")
    write(folder / "train.csv", churn(400), index=True, crlf=True, bom=True)
    from fastnn.cli import main
    import contextlib
    import io as _stdio

    err = _stdio.StringIO()
    with contextlib.redirect_stdout(_stdio.StringIO()), contextlib.redirect_stderr(err):
        code = main(["train", "--data", str(folder / "train.csv"), "--target", "churned", "--seed", "0",
                     "--save", str(folder / "m.npz"), "--json"])
    assert code == 0, err.getvalue()
    return folder


def test_defaults_train_text_labels_text_features_and_empty_cells(trained):
    model = fn.load(trained / "m.npz")
    assert model.preprocessing.names == ["age", "income", "plan", "mobile"]  # the index column left out
    assert model.preprocessing.target_ == "churned"
    assert model.target.classes_.tolist() == ["no", "yes"]
    assert model.preprocessing.feature_names_out == ["age", "income", "plan=basic", "plan=pro", "plan=team",
                                                     "mobile=false", "mobile=true"]
    kinds = [c["kind"] for c in model.preprocessing.columns_]
    assert kinds == ["number", "number", "category", "category"]


def test_predict_by_name_with_target_index_reordered_columns_and_unseen_category(capsys, trained, tmp_path):
    rows = churn(60, seed=1)
    rows[0]["plan"] = "enterprise"  # never seen in training: all zeros
    write(tmp_path / "test.csv", rows, columns=["churned", "plan", "mobile", "income", "age"], index=True)
    out, err = cli(capsys, "predict", trained / "m.npz", "--data", tmp_path / "test.csv", "--out", tmp_path / "p.csv")
    assert "left out the leading column ''" in out and "a pandas index" in out
    written = read_rows(tmp_path / "p.csv")
    assert list(written[0]) == ["label", "prob_no", "prob_yes"]
    assert {r["label"] for r in written} <= {"yes", "no"}
    accuracy = np.mean([w["label"] == r["churned"] for w, r in zip(written, rows)])
    assert accuracy > 0.85
    # the same as the model's own predict on the table in training order
    model = fn.load(trained / "m.npz")
    table = tables.read_table(str(tmp_path / "test.csv"))
    probs = model.predict_proba(table)
    np.testing.assert_allclose([[float(r["prob_no"]), float(r["prob_yes"])] for r in written], probs, rtol=1e-6)
    # evaluate reports on the text labels, finding the target column by the name the model stored
    out, err = cli(capsys, "evaluate", trained / "m.npz", "--data", tmp_path / "test.csv", "--json")
    assert json.loads(out.splitlines()[-1])["test_accuracy"] == pytest.approx(accuracy)


def test_a_missing_column_is_refused_by_name(capsys, trained, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "income"} for r in churn(10)]
    write(tmp_path / "short.csv", rows)
    code, out, err = run(capsys, "predict", trained / "m.npz", "--data", tmp_path / "short.csv",
                         "--out", tmp_path / "p.csv")
    assert code == 1 and "short.csv: column(s) 'income' missing: the model was trained on age, income" in err
    assert not (tmp_path / "p.csv").exists()


def test_text_in_a_numeric_column_names_line_and_column(capsys, trained, tmp_path):
    rows = churn(10)
    rows[4]["age"] = "forty"
    write(tmp_path / "bad.csv", rows)
    code, out, err = run(capsys, "evaluate", trained / "m.npz", "--data", tmp_path / "bad.csv")
    assert code == 1
    assert "bad.csv: line 6, column 'age': 'forty' is not a number, and the model was trained on numbers" in err


def test_unknown_label_in_test_data(capsys, trained, tmp_path):
    rows = churn(10)
    rows[2]["churned"] = "maybe"
    write(tmp_path / "odd.csv", rows)
    code, out, err = run(capsys, "evaluate", trained / "m.npz", "--data", tmp_path / "odd.csv")
    assert code == 1 and "odd.csv: line 4, column 'churned': 'maybe' is not one of the model's classes" in err


def test_no_impute_refuses_an_empty_cell_by_line(capsys, tmp_path):
    write(tmp_path / "t.csv", churn(50))
    code, out, err = run(capsys, "train", "--data", tmp_path / "t.csv", "--target", "churned", "--no-impute",
                         "--epochs", "1")
    assert code == 1 and "t.csv: line 6, column 'age': empty, and imputation is off" in err


def test_integer_and_boolean_labels_are_written_back(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    for labels, expected in ((np.where(X[:, 0] > 0, 7, -3), ["-3", "7"]),
                             (np.where(X[:, 0] > 0, "true", "false"), ["false", "true"])):
        rows = [{"a": f"{a:.6f}", "b": f"{b:.6f}", "y": str(t)} for (a, b), t in zip(X, labels)]
        write(tmp_path / "d.csv", rows)
        cli(capsys, "train", "--data", tmp_path / "d.csv", "--target", "y", "--epochs", "20", "--seed", "0",
            "--save", tmp_path / "m.npz", "-q")
        cli(capsys, "predict", tmp_path / "m.npz", "--data", tmp_path / "d.csv", "--out", tmp_path / "p.csv")
        written = read_rows(tmp_path / "p.csv")
        assert list(written[0]) == ["label", *(f"prob_{c}" for c in expected)]
        assert np.mean([w["label"] == r["y"] for w, r in zip(written, rows)]) > 0.9


def test_regression_target_standardized_and_predicted_in_its_units(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 250_000 + 40_000 * X[:, 0] - 20_000 * X[:, 1]
    rows = [{"rooms": f"{a:.6f}", "area": f"{b:.6f}", "noise": f"{c:.6f}", "price": f"{t:.2f}"}
            for (a, b, c), t in zip(X, y)]
    write(tmp_path / "h.csv", rows)
    out, _ = cli(capsys, "train", "--data", tmp_path / "h.csv", "--target", "price", "--task", "regression",
                 "--seed", "0", "--save", tmp_path / "m.npz", "--json")
    assert json.loads(out.splitlines()[-1])["train_r2"] > 0.95
    cli(capsys, "predict", tmp_path / "m.npz", "--data", tmp_path / "h.csv", "--task", "regression",
        "--out", tmp_path / "p.csv")
    pred = np.array([float(r["prediction"]) for r in read_rows(tmp_path / "p.csv")])
    assert np.abs(pred - y).mean() < 0.25 * y.std()  # in the target's units (standardized, they would be near 0)
    out, _ = cli(capsys, "evaluate", tmp_path / "m.npz", "--data", tmp_path / "h.csv", "--task", "regression",
                 "--json")
    assert json.loads(out.splitlines()[-1])["test_loss"] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-4)


def test_default_run_on_a_large_table_stops_early_and_keeps_the_best_weights(capsys, trained, monkeypatch):
    monkeypatch.setattr(selection, "MAX_ROWS", 100)  # the 400-row table counts as large: one validation split
    out, err = cli(capsys, "train", "--data", trained / "train.csv", "--target", "churned", "--seed", "0",
                   "--json", "--hidden", "16")
    result = json.loads(out.splitlines()[-1])
    val = result["history"]["val_loss"]
    assert "360 train / 40 validation" in err and "cross_validation" not in result
    assert 10 < result["epochs"] < 1000 and len(val) == result["epochs"]
    assert min(val) < min(val[-10:])  # it stopped after 10 epochs without improvement


def test_default_run_on_a_small_table_cross_validates_then_trains_on_every_row(capsys, trained):
    out, err = cli(capsys, "train", "--data", trained / "train.csv", "--target", "churned", "--seed", "0",
                   "--json", "--hidden", "16")
    result = json.loads(out.splitlines()[-1])
    chosen = result["cross_validation"]
    assert chosen["folds"] == 5 and chosen["weight_decay"] in selection.WEIGHT_DECAYS
    assert "400 rows, fewer than 2,000: choosing the epochs and the weight decay by 5-fold cross-validation" in err
    for decay in selection.WEIGHT_DECAYS:
        assert f"  weight decay {decay:g}: mean val_loss " in err
    assert f"chose weight decay {chosen['weight_decay']:g} and {chosen['epochs']} epochs" in err
    assert "400 train / no validation" in err and "val_loss" not in result["history"]
    assert result["epochs"] == chosen["epochs"] and 1 <= chosen["epochs"] <= 1000
    assert f"weight_decay={chosen['weight_decay']}" in err  # the final fit's optimizer
    # --weight-decay given: only the epochs are chosen; --epochs or --validation-split: no cross-validation
    out, err = cli(capsys, "train", "--data", trained / "train.csv", "--target", "churned", "--seed", "0",
                   "--json", "--hidden", "16", "--weight-decay", "0.05")
    result = json.loads(out.splitlines()[-1])
    assert result["cross_validation"]["weight_decay"] == 0.05 and "choosing the epochs by 5-fold" in err
    assert err.count("  weight decay ") == 1
    for extra in (["--epochs", "3"], ["--validation-split", "0.2"], ["--early-stopping", "5"]):
        out, err = cli(capsys, "train", "--data", trained / "train.csv", "--target", "churned", "--seed", "0",
                       "--json", "--hidden", "16", *extra)
        assert "cross_validation" not in json.loads(out.splitlines()[-1]) and "cross-validation" not in err


def test_a_table_too_small_to_cross_validate_asks_for_epochs(capsys, tmp_path):
    write(tmp_path / "t.csv", [{"x": str(i), "y": "ab"[i % 2]} for i in range(9)])
    code, out, err = run(capsys, "train", "--data", tmp_path / "t.csv", "--target", "y")
    assert code == 1 and "9 rows are too few to choose the epochs by 5-fold cross-validation; give --epochs" in err
    cli(capsys, "train", "--data", tmp_path / "t.csv", "--target", "y", "--epochs", "2", "-q")


def test_help_states_the_default_rule(capsys):
    code, out, err = run(capsys, "train", "--help")
    text = " ".join(out.split())
    assert code == 0 and "Without --epochs otherwise (or with --validation-split or --early-stopping): train " \
                         "until the validation loss stops improving" in text
    assert "a --data table of fewer than 2,000 rows: choose the epochs" in text and "5-fold cross-validation" in text
    assert "--no-standardize" in text and "--no-impute" in text and "--categorical" in text


def test_onnx_export_matches_predict(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = fn.load(trained / "m.npz")
    rows = churn(50, seed=2)
    rows[0]["plan"] = "enterprise"
    write(tmp_path / "t.csv", rows)
    table = tables.read_table(str(tmp_path / "t.csv"))
    fn.export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    numbers = np.stack([table["age"], table["income"]], axis=1).astype(np.float64)
    text = lambda name: np.array([["" if v is None else str(v).lower()] for v in table[name].tolist()], object)  # noqa: E731
    label, probabilities = session.run(None, {"X": numbers, "plan": text("plan"), "mobile": text("mobile")})
    np.testing.assert_allclose(probabilities, model.predict_proba(table), atol=1e-5)
    assert label.tolist() == model.target.decode(model.predict(table).argmax(axis=1)).tolist()


def test_onnx_export_of_a_regression_in_its_units(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    X = rng.normal(100, 30, size=(200, 3))
    y = X @ [3.0, -1.0, 2.0] + 1e4
    model = fn.Sequential(fn.Linear(3, 8, seed=0), fn.Tanh(), fn.Linear(8, 1, seed=1),
                          preprocessing=Standardize().adapt(X), target=Standardize().adapt(y))
    model.fit(X, y, loss=fn.MSELoss(), optimizer=fn.Adam(model.parameters(), lr=1e-2), epochs=20, verbose=0)
    fn.export_onnx(model, tmp_path / "r.onnx")
    (Y,) = ort.InferenceSession(str(tmp_path / "r.onnx")).run(None, {"X": X})
    np.testing.assert_allclose(Y, model.predict(X), rtol=1e-5)


def test_python_api_adapt_save_load(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, size=(100, 4))
    y = np.where(X[:, 0] > 5, "hi", "lo")
    norm = Standardize().adapt(X)
    np.testing.assert_allclose(norm(X).mean(axis=0), 0, atol=1e-12)
    model = fn.Sequential(fn.Linear(4, 2, seed=0), preprocessing=norm, target=Labels().adapt(y))
    model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters(), lr=1e-2), epochs=5,
              verbose=0)
    bare = fn.Sequential(fn.Linear(4, 2, seed=0))
    bare[0].W.data[...], bare[0].b.data[...] = model[0].W.data, model[0].b.data
    np.testing.assert_array_equal(model.predict(X), bare.predict(norm(X, np.float32)))
    model.save(tmp_path / "m.npz")
    loaded = fn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.evaluate(X, y, fn.SoftmaxCrossEntropy()) == model.evaluate(X, y, fn.SoftmaxCrossEntropy())
    assert model.copy().target.classes_.tolist() == ["hi", "lo"]
    # a reader that cannot apply the preprocessing refuses the file instead of predicting from raw features
    with pytest.raises(ValueError, match="version 2 is not supported"):
        fio.read_model(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="preprocessing gives 4 features, but the first layer takes 3"):
        fn.Sequential(fn.Linear(3, 2), preprocessing=norm)


@pytest.mark.parametrize("config, message", [
    ({"mean": [0.0], "std": [-1.0]}, r"std\[0\] must be a finite number > 0, got -1.0"),
    ({"mean": [0.0], "std": [1.0], "extra": 1}, "config must have exactly the keys"),
    ({"mean": ["a"], "std": [1.0]}, r"mean\[0\] must be a finite number, got 'a' \(str\)"),
])
def test_hostile_preprocessing_in_a_model_file_is_refused(tmp_path, config, message):
    model = fn.Sequential(fn.Linear(1, 1, seed=0))
    arrays = {name: p.data for name, p in model.named_parameters()}
    fio.write_model(tmp_path / "m.npz", model.get_config(), arrays,
                    {"features": {"class": "Standardize", "config": config}, "target": None})
    with pytest.raises(ValueError, match=message):
        fn.load(tmp_path / "m.npz")


def test_table_refuses_an_identifier_column():
    with pytest.raises(DataError, match="column 'id': 1,001 distinct values"):
        Table().adapt({"id": np.array([f"c{i}" for i in range(1001)], object), "x": np.arange(1001.0)})


@pytest.mark.parametrize("n", [1, 2, 3, 4, 1001, 20_000, 20_001])
def test_the_imputed_median_is_numpys_and_leaves_the_column_alone(n):
    rng = np.random.default_rng(n)
    for x in (rng.standard_normal(n), np.sort(rng.standard_normal(n)), rng.integers(0, 3, n).astype(float),
              np.full(n, -2.5), rng.standard_cauchy(n), np.tile(np.arange(7.0), n // 7 + 1)[:n]):
        before = x.copy()
        assert columns._median(x) == np.median(x)
        np.testing.assert_array_equal(x, before)
    x = rng.standard_normal(n)
    assert Table().adapt({"x": x}).columns_[0]["fill"] == np.median(x)


def test_reader_without_pyarrow_keeps_the_numeric_path_and_its_errors(capsys, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    rows = [{"a": repr(float(a)), "b": repr(float(b)), "c": repr(float(c)), "y": str(int(a > 0))} for a, b, c in X]
    write(tmp_path / "n.csv", rows, crlf=True, bom=True)
    with_arrow = tables.read_table(str(tmp_path / "n.csv"))
    monkeypatch.setattr(tables, "have_pyarrow", lambda: False)
    without = tables.read_table(str(tmp_path / "n.csv"))
    assert without.names == with_arrow.names == ["a", "b", "c", "y"]
    for name in "abc":
        np.testing.assert_array_equal(without[name], with_arrow[name])
    rows[3]["b"] = "x"
    write(tmp_path / "t.csv", rows)
    code, out, err = run(capsys, "train", "--data", tmp_path / "t.csv", "--target", "y", "--epochs", "1")
    assert code == 1 and "t.csv: line 5, column 'b': 'x' is not a finite number (text columns and empty cells " \
                         "need pyarrow: pip install 'fastnn[tables]')" in err


def test_parquet_and_pandas_to_csv(capsys, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow.parquet")
    frame = pd.DataFrame(churn(200)).replace({"": None, "NA": None})
    frame["age"] = frame["age"].astype(float)
    frame["income"] = frame["income"].astype(float)
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv")  # pandas' default: an unnamed index column
    for name in ("t.parquet", "t.csv"):
        out, err = cli(capsys, "train", "--data", tmp_path / name, "--target", "churned", "--epochs", "30",
                       "--seed", "0", "--json", "--save", tmp_path / "m.npz")
        assert json.loads(out.splitlines()[-1])["train_accuracy"] > 0.85
        assert fn.load(tmp_path / "m.npz").preprocessing.names == ["age", "income", "plan", "mobile"]


def test_readme_table_runs_as_pasted(tmp_path):
    """The README's "Your own table" commands, run in a shell as pasted (``fastnn`` as this checkout's)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    section = (root / "README.md").read_text().split("### Your own table", 1)[1]
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    env = {**os.environ, "PYTHONPATH": str(root)}
    for command in commands:
        if command.startswith("fastnn "):
            command = f"{sys.executable} -m fastnn {command[len('fastnn '):]}"
        elif command.startswith("python "):
            command = f"{sys.executable} {command[len('python '):]}"
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip().splitlines()[-1].startswith("test_loss: ")
    claimed = re.search(r"The last line prints `(.*?)`", section).group(1)
    accuracy = float(claimed.rsplit(" ", 1)[1])
    assert float(proc.stdout.strip().rsplit(" ", 1)[1]) >= accuracy - 0.02
    header = re.search(r"starts\n`(.*?)`", section).group(1)
    assert (tmp_path / "wine_predictions.csv").read_text().splitlines()[0] == header


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wine", "breast_cancer", "churn", "diabetes", "iris"])
def test_cli_defaults_match_a_careful_scikit_learn_pipeline(capsys, tmp_path, name):
    """Train/test 70/30 written with pandas (index and all); the CLI's defaults against scikit-learn's MLP after
    impute + one-hot + standardize (a regression target standardized too), random_state=0, max_iter=1000, the
    better of early stopping on and off: accuracy within 0.02, R^2 within 0.03."""
    pd = pytest.importorskip("pandas")
    import warnings

    from sklearn import datasets
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    regression = name == "diabetes"
    if name == "churn":
        frame = pd.DataFrame(churn(1500)).replace({"": np.nan, "NA": np.nan})
        frame[["age", "income"]] = frame[["age", "income"]].astype(float)
        target = "churned"
    else:
        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        frame, target = bunch.frame.copy(), "target"
        if not regression:
            frame[target] = np.asarray(bunch.target_names)[bunch.target]  # text labels, as people have them
    train, test = train_test_split(frame, test_size=0.3, random_state=0)
    train.to_csv(tmp_path / "train.csv")
    test.to_csv(tmp_path / "test.csv")
    task = "regression" if regression else "classification"
    cli(capsys, "train", "--data", tmp_path / "train.csv", "--target", target, "--task", task, "--seed", "0",
        "--save", tmp_path / "m.npz", "-q")
    out, _ = cli(capsys, "evaluate", tmp_path / "m.npz", "--data", tmp_path / "test.csv", "--task", task, "--json")
    ours = json.loads(out.splitlines()[-1])["test_r2" if regression else "test_accuracy"]

    X, y, Xt, yt = train.drop(columns=target), train[target], test.drop(columns=target), test[target]
    text = [c for c in X if not pd.api.types.is_numeric_dtype(X[c])]
    numbers = [c for c in X if c not in text]
    prepare = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
        ("text", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         text)])
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for early in (False, True):
            if regression:
                mlp = TransformedTargetRegressor(MLPRegressor(random_state=0, max_iter=1000, early_stopping=early),
                                                 transformer=StandardScaler())
                scores.append(r2_score(yt, make_pipeline(prepare, mlp).fit(X, y).predict(Xt)))
            else:
                mlp = MLPClassifier(random_state=0, max_iter=1000, early_stopping=early)
                scores.append(accuracy_score(yt, make_pipeline(prepare, mlp).fit(X, y).predict(Xt)))
    print(f"{name}: fastnn {ours:.4f}, scikit-learn {max(scores):.4f} (early stopping off, on: {scores})")
    assert ours >= max(scores) - (0.03 if regression else 0.02)


def test_categorical_option_one_hot_encodes_numeric_codes(capsys, tmp_path):
    rng = np.random.default_rng(0)
    code = rng.integers(1, 4, 150)
    rows = [{"x": f"{v:.4f}", "region": str(c), "y": "a" if c == 2 else "b"} for v, c in zip(rng.normal(size=150), code)]
    write(tmp_path / "r.csv", rows)
    cli(capsys, "train", "--data", tmp_path / "r.csv", "--target", "y", "--categorical", "region", "--epochs", "5",
        "--save", tmp_path / "m.npz", "-q")
    assert fn.load(tmp_path / "m.npz").preprocessing.feature_names_out == ["x", "region=1", "region=2", "region=3"]
    code, out, err = run(capsys, "train", "--data", tmp_path / "r.csv", "--target", "y", "--categorical", "zone")
    assert code == 1 and "categorical column(s) ['zone'] are not in the table" in err
