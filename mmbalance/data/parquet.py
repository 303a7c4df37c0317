"""Load and write multimodal datasets stored as Parquet.

Format: an integer column `label`, a string column `split` (train/val/test) and one column
per modality holding each sample's feature vector as a list of numbers
(`fixed_size_list<float32>` preferred; `list<float>`/`list<double>` of equal lengths also
accepted). Every column other than `label` and `split` is a modality, in file order. The
schema metadata key `num_classes` (optional) fixes the number of classes; without it,
num_classes is max(label) + 1 over all splits.

A folder is read as one Parquet dataset (files in sorted order, hive partitions such as
`split=train/` included); every file must have the first file's columns, types and
`num_classes`, or the error names the file and the column. Every problem raises `DataError`
naming the column and the 0-based row of the file (for a folder: of all its rows, in order),
so that a user can find and fix the bad value. Labels must lie below `MAX_CLASSES`, and
without `num_classes` in the metadata every class 0..max must occur; the training split needs
at least 2 classes.

Features are standardised per feature (zero mean, unit variance) with statistics of the
training split alone, applied to every split, and recorded in the dataset's `info` (runs
write it to `config.json`): features at raw scale (values up to 10^4, as in many published
feature sets) make OGM-GE and MLA diverge. `parquet:PATH,standardize=false` opts out.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from mmbalance.data.dataset import SPLITS, MultimodalDataset, Split, check_modality_names
from mmbalance.errors import ConfigError, DataError
from mmbalance.limits import check_path
from mmbalance.spec import typed_fields

LABEL = "label"
SPLIT = "split"
NUM_CLASSES_KEY = b"num_classes"
MAX_CLASSES = 100_000  # a label beyond this is a mistake (a model head that size is absurd)
_OPTION = re.compile(r",\s*(standardize)\s*=\s*([^,]*)\s*$")


def parquet_selector(rest: str) -> tuple[str, dict]:
    """'PATH[,standardize=false]' -> (PATH, options); the path may hold commas and slashes,
    options are recognised at the end only."""
    options: dict[str, str] = {}
    while (match := _OPTION.search(rest)) is not None:
        options.setdefault(match.group(1), match.group(2))
        rest = rest[: match.start()]
    if not rest.strip():
        raise ConfigError("data: 'parquet' needs a path, as parquet:PATH")
    typed = typed_fields("data 'parquet'", options, load_parquet, noun="option")
    typed.pop("path", None)
    return rest.strip(), typed


def _first(mask: pa.Array | pa.ChunkedArray | np.ndarray) -> int | None:
    """Index of the first True in a boolean mask (nulls count as False), or None."""
    if not isinstance(mask, np.ndarray):
        mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _check_same_schema(files: list[str]) -> None:
    """Every file of a folder with the first file's columns, types and num_classes: a column
    missing from some files would be dropped, or a type cast, without a word otherwise."""
    first = pq.read_schema(files[0])
    names = first.names
    for file in files[1:]:
        schema = pq.read_schema(file)
        for name in names:
            if name not in schema.names:
                raise DataError(f"{file}: column '{name}' is missing (it is in {files[0]})")
            if not schema.field(name).type.equals(first.field(name).type):
                raise DataError(f"{file}: column '{name}' has type {schema.field(name).type}, "
                                f"{files[0]} has {first.field(name).type}")
        extra = [n for n in schema.names if n not in names]
        if extra:
            raise DataError(f"{file}: column '{extra[0]}' is not in {files[0]}; every file "
                            "needs the same columns")
        mine = (schema.metadata or {}).get(NUM_CLASSES_KEY)
        theirs = (first.metadata or {}).get(NUM_CLASSES_KEY)
        if mine != theirs:
            raise DataError(f"{file}: schema metadata 'num_classes' is {mine!r}, {files[0]} "
                            f"has {theirs!r}")


def _read_table(path: Path) -> pa.Table:
    if not path.exists():
        raise DataError(f"{path}: no such Parquet file or folder")
    try:
        if path.is_dir():
            data = pads.dataset(path, format="parquet", partitioning="hive")
            if not data.files:
                raise DataError(f"{path}: folder holds no Parquet files")
            _check_same_schema(sorted(data.files))
            table = data.to_table()
            # The dataset schema keeps the first file's metadata (e.g. num_classes).
            if table.schema.metadata is None and data.schema.metadata:
                table = table.replace_schema_metadata(data.schema.metadata)
            return table
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as Parquet: {exc}") from exc


def _check_nulls(name: str, column: pa.Array) -> None:
    if column.null_count:
        row = _first(pc.is_null(column))
        raise DataError(f"column '{name}', row {row}: null value")


def _labels(column: pa.Array) -> np.ndarray:
    """Labels as int64, after checking nulls, type and sign."""
    _check_nulls(LABEL, column)
    if not pa.types.is_integer(column.type):
        row = 0
        if pa.types.is_floating(column.type):
            values = column.to_numpy(zero_copy_only=False)
            bad = _first(~np.isfinite(values) | (values != np.round(values)))
            row = 0 if bad is None else bad
        value = f" (value {column[row].as_py()!r})" if len(column) else ""
        raise DataError(
            f"column '{LABEL}', row {row}: labels must have an integer type, got "
            f"{column.type}{value}"
        )
    if pa.types.is_signed_integer(column.type):
        row = _first(pc.less(column, 0))
        if row is not None:
            raise DataError(f"column '{LABEL}', row {row}: negative label {column[row].as_py()}")
    # compared at the column's own signedness, widened losslessly: against a plain int an
    # uint64 label of 2**64 - 1 fails in Arrow's cast to int64 (a traceback, not this line)
    wide = pa.uint64() if pa.types.is_unsigned_integer(column.type) else pa.int64()
    row = _first(pc.greater_equal(column.cast(wide), pa.scalar(MAX_CLASSES, wide)))
    if row is not None:
        raise DataError(f"column '{LABEL}', row {row}: label {column[row].as_py()} is not below "
                        f"{MAX_CLASSES}; labels are class numbers 0..C-1")
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _split_names(column: pa.Array) -> pa.Array:
    """The `split` column as strings, after checking nulls, type and allowed values."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    _check_nulls(SPLIT, column)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(
            f"column '{SPLIT}', row 0: split names must be strings, got type {column.type}"
        )
    allowed = pa.array(SPLITS, type=column.type)
    row = _first(pc.invert(pc.is_in(column, value_set=allowed)))
    if row is not None:
        raise DataError(
            f"column '{SPLIT}', row {row}: unknown split {column[row].as_py()!r}; "
            f"allowed values: {', '.join(SPLITS)}"
        )
    return column


def _is_list(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    )


def _modality(name: str, column: pa.Array) -> np.ndarray:
    """One modality column as a contiguous float32 array of shape (rows, dim)."""
    dtype = column.type
    value_type = dtype.value_type if _is_list(dtype) else None
    if value_type is None or not (
        pa.types.is_integer(value_type) or pa.types.is_floating(value_type)
    ):
        raise DataError(
            f"column '{name}': type {dtype} is not a list of numbers; a modality column "
            "must be fixed_size_list<float32> or list<float>/list<double>"
        )
    _check_nulls(name, column)
    n = len(column)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)

    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    dim = int(lengths[0])
    row = _first(lengths != dim)
    if row is not None:
        raise DataError(
            f"column '{name}', row {row}: vector has length {int(lengths[row])}, "
            f"expected {dim} (the length of row 0)"
        )
    if dim == 0:
        raise DataError(f"column '{name}', row 0: empty vector; modalities need length >= 1")

    values = pc.list_flatten(column)
    if values.null_count:
        element = _first(pc.is_null(values))
        raise DataError(
            f"column '{name}', row {element // dim}: null value at position {element % dim}"
        )
    raw = values.to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore", invalid="ignore"):
        flat = raw.astype(np.float32, copy=False)
    finite = np.isfinite(flat)
    if not finite.all():
        element = _first(~finite)
        raise DataError(
            f"column '{name}', row {element // dim}: value {float(raw[element])} at position "
            f"{element % dim} is NaN or inf (or overflows float32)"
        )
    return np.ascontiguousarray(flat.reshape(n, dim))


def _num_classes(table: pa.Table, labels: np.ndarray) -> int:
    found = int(labels.max()) + 1 if labels.size else 0
    metadata = table.schema.metadata or {}
    if NUM_CLASSES_KEY not in metadata:
        absent = np.setdiff1d(np.arange(found), labels)
        if absent.size:
            raise DataError(
                f"column '{LABEL}': class {int(absent[0])} never occurs but label "
                f"{found - 1} does; labels must be 0..C-1 (or give num_classes in the schema "
                f"metadata, as write_parquet does)")
        return found
    text = metadata[NUM_CLASSES_KEY].decode(errors="replace")
    try:
        num_classes = int(text)
    except ValueError:
        num_classes = 0
    if not 1 <= num_classes <= MAX_CLASSES:
        raise DataError(f"schema metadata 'num_classes': {text!r} is not an integer in "
                        f"1..{MAX_CLASSES}")
    row = _first(labels >= num_classes)
    if row is not None:
        raise DataError(
            f"column '{LABEL}', row {row}: label {int(labels[row])} outside "
            f"0..{num_classes - 1} (num_classes={num_classes} in the schema metadata)"
        )
    return num_classes


def load_parquet(path: str | Path, standardize: bool = True) -> MultimodalDataset:
    """Read a Parquet file or folder into a validated MultimodalDataset.

    Lets users bring their own features (one vector column per modality) without writing
    a loader; every malformed value is reported with its column and row so it can be fixed
    at the source rather than surfacing later as a shape error or a NaN loss. With
    `standardize` (the default) features are standardised with training-split statistics.
    """
    path = check_path(path, "data: parquet")  # a name over the OS limits: one line
    table = _read_table(path)
    try:
        dataset = _to_dataset(table, f"parquet:{path}")
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    if standardize:
        standardize_features(dataset)
    else:
        dataset.info["standardize"] = False
    return dataset.validate()


def standardize_features(dataset: MultimodalDataset) -> dict:
    """Standardise every feature with the training split's mean and std (a constant feature
    keeps std 1), apply it to all splits, and record it in `dataset.info['standardize']`."""
    train = dataset.splits["train"]
    stats: dict = {"split": "train", "mean": {}, "std": {}}
    for m in dataset.modalities:
        x = train.x[m].reshape(len(train), -1).astype(np.float64)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        for split in dataset.splits.values():
            shape = split.x[m].shape
            flat = (split.x[m].reshape(len(split), -1).astype(np.float64) - mean) / std
            split.x[m] = np.ascontiguousarray(flat.reshape(shape), dtype=np.float32)
        stats["mean"][m] = mean.tolist()
        stats["std"][m] = std.tolist()
    dataset.info["standardize"] = stats
    return stats


def _to_dataset(table: pa.Table, dataset_name: str) -> MultimodalDataset:
    """Check every column and split the rows; messages name column and row, not the file."""
    names = table.column_names
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise DataError(f"duplicate column(s) {duplicates}")
    for required in (LABEL, SPLIT):
        if required not in names:
            raise DataError(f"missing column '{required}'; columns are {names}")
    modalities = [c for c in names if c not in (LABEL, SPLIT)]
    if len(modalities) < 2:
        raise DataError(
            f"need at least 2 modality columns besides '{LABEL}' and '{SPLIT}', got {modalities}"
        )
    check_modality_names(modalities, "modality columns")  # before any column is decoded

    def column(name: str) -> pa.Array:
        return table.column(name).combine_chunks()

    labels = _labels(column(LABEL))
    split_column = _split_names(column(SPLIT))
    rows = {}
    for split_name in SPLITS:
        mask = pc.equal(split_column, split_name).to_numpy(zero_copy_only=False)
        rows[split_name] = np.flatnonzero(mask)
        if rows[split_name].size == 0:
            raise DataError(f"column '{SPLIT}': split '{split_name}' has no rows")
    classes = np.unique(labels[rows["train"]])
    if classes.size < 2:
        raise DataError(f"column '{LABEL}': the training split holds only class "
                        f"{int(classes[0])}; a classifier needs at least 2 classes")
    features = {m: _modality(m, column(m)) for m in modalities}
    num_classes = _num_classes(table, labels)

    splits = {
        split_name: Split(
            x={m: np.ascontiguousarray(features[m][idx]) for m in modalities},
            y=np.ascontiguousarray(labels[idx]),
        )
        for split_name, idx in rows.items()
    }
    return MultimodalDataset(
        name=dataset_name, modalities=modalities, num_classes=num_classes, splits=splits
    )


def write_parquet(dataset: MultimodalDataset, path: str | Path) -> Path:
    """Write `dataset` in the format `load_parquet` reads, and return the file's path.

    Gives users a template for their own files and lets any dataset (e.g. a generated
    one) be frozen to disk. Samples with more than one dimension are flattened, so
    loading gives back vectors; `num_classes` is kept in the schema metadata so classes
    absent from the data survive the round trip.
    """
    path = Path(path)
    for m in dataset.modalities:
        if m in (LABEL, SPLIT):
            raise DataError(f"{dataset.name}: modality name '{m}' clashes with a reserved column")
    unknown = [s for s in dataset.splits if s not in SPLITS]
    if unknown:
        raise DataError(
            f"{dataset.name}: unknown split(s) {unknown}; allowed values: {', '.join(SPLITS)}"
        )
    present = [s for s in SPLITS if s in dataset.splits]

    labels = np.concatenate([np.asarray(dataset.splits[s].y, dtype=np.int64) for s in present])
    split_names = [s for s in present for _ in range(len(dataset.splits[s]))]
    arrays = [pa.array(labels, type=pa.int64()), pa.array(split_names, type=pa.string())]
    for m in dataset.modalities:
        parts = [np.asarray(dataset.splits[s].x[m], dtype=np.float32) for s in present]
        flat = np.concatenate([p.reshape(p.shape[0], -1) for p in parts])
        dim = flat.shape[1]
        if dim == 0:
            raise DataError(f"{dataset.name}: modality '{m}' has empty samples")
        values = pa.array(np.ascontiguousarray(flat).reshape(-1), type=pa.float32())
        arrays.append(pa.FixedSizeListArray.from_arrays(values, dim))

    table = pa.Table.from_arrays(
        arrays,
        names=[LABEL, SPLIT, *dataset.modalities],
        metadata={NUM_CLASSES_KEY: str(int(dataset.num_classes)).encode()},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
