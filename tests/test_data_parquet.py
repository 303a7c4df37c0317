"""Parquet loader: round trips (raw values: `standardize=False`), folders, and a DataError
naming column and row per bad file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mmbalance.data.dataset import SPLITS, MultimodalDataset, Split
from mmbalance.data.parquet import load_parquet, write_parquet
from mmbalance.errors import DataError

N = 12
SPLIT_OF_ROW = [SPLITS[i % 3] for i in range(N)]


def _random_dataset(seed: int = 0) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    dims = {"audio": 3, "visual": 7, "text": 1}
    splits = {}
    for name, n in (("train", 9), ("val", 4), ("test", 5)):
        splits[name] = Split(
            x={m: rng.standard_normal((n, d)).astype(np.float32) for m, d in dims.items()},
            y=rng.integers(0, 4, size=n).astype(np.int64),
        )
    # Class 4 appears nowhere: num_classes must come back from the metadata, not max+1.
    return MultimodalDataset("random", list(dims), num_classes=5, splits=splits)


def _fixed(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _columns() -> dict[str, pa.Array]:
    """A good file's columns: 12 rows, train/val/test in turn, modalities a (3) and b (2)."""
    a = np.arange(N * 3, dtype=np.float32).reshape(N, 3)
    b = np.arange(N * 2, dtype=np.float64).reshape(N, 2) / 10
    return {
        "label": pa.array([i % 4 for i in range(N)], type=pa.int64()),
        "split": pa.array(SPLIT_OF_ROW, type=pa.string()),
        "a": _fixed(a),
        "b": pa.array(b.tolist(), type=pa.list_(pa.float64())),
    }


def _write(tmp_path: Path, columns: dict, metadata: dict | None = None) -> Path:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(columns, metadata=metadata), path)
    return path


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_parquet(path)
    return str(info.value)


def test_round_trip_keeps_values_order_and_num_classes(tmp_path):
    ds = _random_dataset()
    path = write_parquet(ds, tmp_path / "sub" / "ds.parquet")
    assert path.exists()
    schema = pq.read_schema(path)
    assert pa.types.is_fixed_size_list(schema.field("visual").type)
    assert schema.field("visual").type.value_type == pa.float32()

    back = load_parquet(path, standardize=False)
    assert back.name == f"parquet:{path}"
    assert back.modalities == ["audio", "visual", "text"]
    assert back.num_classes == 5
    assert back.input_shapes == {"audio": (3,), "visual": (7,), "text": (1,)}
    for name in SPLITS:
        np.testing.assert_array_equal(back.splits[name].y, ds.splits[name].y)
        assert back.splits[name].y.dtype == np.int64
        for m in ds.modalities:
            got = back.splits[name].x[m]
            assert got.dtype == np.float32 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, ds.splits[name].x[m])


def test_num_classes_defaults_to_max_label_plus_one(tmp_path):
    ds = load_parquet(_write(tmp_path, _columns()), standardize=False)
    assert ds.num_classes == 4
    train_rows = [i for i in range(N) if SPLIT_OF_ROW[i] == "train"]
    np.testing.assert_array_equal(ds.splits["train"].y, [i % 4 for i in train_rows])
    # list<double> column converted to float32 with the same values, in file row order.
    expected_b = np.arange(N * 2, dtype=np.float64).reshape(N, 2)[train_rows] / 10
    np.testing.assert_allclose(ds.splits["train"].x["b"], expected_b.astype(np.float32))
    assert ds.splits["train"].x["b"].dtype == np.float32


def test_image_samples_are_flattened_on_write(tmp_path):
    ds = _random_dataset()
    for split in ds.splits.values():
        n = len(split)
        split.x["visual"] = np.arange(n * 8, dtype=np.float32).reshape(n, 2, 2, 2)
    back = load_parquet(write_parquet(ds, tmp_path / "img.parquet"), standardize=False)
    assert back.input_shapes["visual"] == (8,)
    for name, split in ds.splits.items():
        np.testing.assert_array_equal(
            back.splits[name].x["visual"], split.x["visual"].reshape(len(split), -1)
        )


def test_folder_of_files(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    table = pa.table(_columns(), metadata={b"num_classes": b"7"})
    pq.write_table(table.slice(0, 6), folder / "part-0.parquet")
    pq.write_table(table.slice(6), folder / "part-1.parquet")
    ds = load_parquet(folder, standardize=False)
    single = load_parquet(_write(tmp_path, _columns()), standardize=False)
    assert ds.num_classes == 7
    for name in SPLITS:
        np.testing.assert_array_equal(ds.splits[name].y, single.splits[name].y)
        for m in ("a", "b"):
            np.testing.assert_array_equal(ds.splits[name].x[m], single.splits[name].x[m])


def test_folder_partitioned_by_split(tmp_path):
    ds = _random_dataset()
    table = pq.read_table(write_parquet(ds, tmp_path / "flat.parquet"))
    folder = tmp_path / "hive"
    for name in SPLITS:
        part = folder / f"split={name}"
        part.mkdir(parents=True)
        rows = table.filter(pc.equal(table["split"], name)).drop_columns(["split"])
        pq.write_table(rows, part / "0.parquet")
    back = load_parquet(folder, standardize=False)
    assert set(back.modalities) == {"audio", "visual", "text"}
    for name in SPLITS:
        np.testing.assert_array_equal(back.splits[name].y, ds.splits[name].y)
        np.testing.assert_array_equal(back.splits[name].x["visual"], ds.splits[name].x["visual"])


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.parquet"
    assert str(path) in _error(path)


def test_not_parquet_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet")
    assert str(path) in _error(path)


@pytest.mark.parametrize("column", ["label", "split"])
def test_missing_required_column(tmp_path, column):
    columns = _columns()
    del columns[column]
    message = _error(_write(tmp_path, columns))
    assert f"missing column '{column}'" in message


def test_one_modality_is_not_enough(tmp_path):
    columns = _columns()
    del columns["b"]
    message = _error(_write(tmp_path, columns))
    assert "at least 2 modality" in message and "'a'" in message


@pytest.mark.parametrize(
    "bad",
    [
        pa.array(np.arange(N, dtype=np.float32)),
        pa.array([["x", "y"]] * N, type=pa.list_(pa.string())),
        pa.array([str(i) for i in range(N)]),
    ],
    ids=["scalar", "list-of-strings", "string"],
)
def test_modality_not_a_list_of_numbers(tmp_path, bad):
    columns = _columns()
    columns["b"] = bad
    message = _error(_write(tmp_path, columns))
    assert "column 'b'" in message and "not a list of numbers" in message


def _with_null(array: pa.Array, row: int) -> pa.Array:
    values = array.to_pylist()
    values[row] = None
    return pa.array(values, type=array.type)


@pytest.mark.parametrize("column,row", [("label", 3), ("split", 7), ("a", 4), ("b", 10)])
def test_null_value_names_column_and_row(tmp_path, column, row):
    columns = _columns()
    columns[column] = _with_null(columns[column], row)
    message = _error(_write(tmp_path, columns))
    assert f"column '{column}', row {row}:" in message and "null" in message


def test_null_inside_a_vector(tmp_path):
    columns = _columns()
    b = columns["b"].to_pylist()
    b[5][1] = None
    columns["b"] = pa.array(b, type=pa.list_(pa.float64()))
    message = _error(_write(tmp_path, columns))
    assert "column 'b', row 5:" in message and "null" in message


def test_ragged_lengths(tmp_path):
    columns = _columns()
    b = columns["b"].to_pylist()
    b[8] = [1.0, 2.0, 3.0]
    columns["b"] = pa.array(b, type=pa.list_(pa.float64()))
    message = _error(_write(tmp_path, columns))
    assert "column 'b', row 8:" in message
    assert "length 3" in message and "expected 2" in message


@pytest.mark.parametrize("column", ["a", "b"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_value(tmp_path, column, value):
    columns = _columns()
    rows = columns[column].to_pylist()
    rows[6][0] = value
    columns[column] = pa.array(rows, type=columns[column].type)
    message = _error(_write(tmp_path, columns))
    assert f"column '{column}', row 6:" in message and "NaN or inf" in message


def test_negative_label(tmp_path):
    columns = _columns()
    labels = columns["label"].to_pylist()
    labels[9] = -1
    columns["label"] = pa.array(labels, type=pa.int32())
    message = _error(_write(tmp_path, columns))
    assert "column 'label', row 9:" in message and "negative" in message


def test_non_integer_label_type(tmp_path):
    columns = _columns()
    labels = [float(v) for v in columns["label"].to_pylist()]
    labels[2] = 1.5
    columns["label"] = pa.array(labels, type=pa.float64())
    message = _error(_write(tmp_path, columns))
    assert "column 'label', row 2:" in message and "integer" in message


def test_string_label_type(tmp_path):
    columns = _columns()
    columns["label"] = pa.array([str(v) for v in columns["label"].to_pylist()])
    message = _error(_write(tmp_path, columns))
    assert "column 'label', row 0:" in message and "integer" in message


def test_unknown_split_value(tmp_path):
    columns = _columns()
    names = list(SPLIT_OF_ROW)
    names[11] = "valid"
    columns["split"] = pa.array(names)
    message = _error(_write(tmp_path, columns))
    assert "column 'split', row 11:" in message and "'valid'" in message
    assert "train, val, test" in message


def test_empty_split(tmp_path):
    columns = _columns()
    columns["split"] = pa.array(["test" if s == "val" else s for s in SPLIT_OF_ROW])
    assert "split 'val' has no rows" in _error(_write(tmp_path, columns))


def test_dictionary_split_column_is_accepted(tmp_path):
    columns = _columns()
    columns["split"] = columns["split"].dictionary_encode()
    ds = load_parquet(_write(tmp_path, columns))
    assert [len(ds.splits[s]) for s in SPLITS] == [4, 4, 4]


def test_label_beyond_metadata_num_classes(tmp_path):
    message = _error(_write(tmp_path, _columns(), metadata={b"num_classes": b"3"}))
    # Labels are i % 4, so row 3 is the first with label 3.
    assert re.search(r"column 'label', row 3:.*label 3", message)


def test_bad_metadata_num_classes(tmp_path):
    message = _error(_write(tmp_path, _columns(), metadata={b"num_classes": b"many"}))
    assert "num_classes" in message and "'many'" in message
