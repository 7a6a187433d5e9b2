"""Reading your own tables for the command line: CSV and Parquet, typed.

With pyarrow (``pip install 'fastnn[tables]'``) a CSV is read by pyarrow's multi-threaded reader: numeric, text and
boolean columns, empty cells and ``NA``-like markers as missing; ``.parquet`` files too. Without it, an all-numeric
CSV is read by ``np.loadtxt`` as before, and a text or empty cell is an error naming its line and column.

Either way :func:`read_table` returns a :class:`Frame`: the header, and each column as a 1-D array converted
from the reader's buffers only when asked for, one at a time, so a table never exists twice in memory.
"""
import collections.abc
import csv
import math
import os
import warnings

import numpy as np

__all__ = ["Frame", "read_table", "have_pyarrow", "line_of_row"]

# What a pandas DataFrame.to_csv() (index=True, the default) names its index column; Parquet's is stored.
_INDEX_NAMES = ("", "Unnamed: 0", "__index_level_0__")


def have_pyarrow():
    try:
        import pyarrow.csv  # noqa: PLC0415, F401  (optional extra)
    except ImportError:
        return False
    return True


class Frame(collections.abc.Mapping):
    """Columns by name, in file order: ``frame[name]`` is a 1-D ndarray (float64 or int64 numbers with NaN for a
    missing number, bool, or object text with None for a missing cell). ``len(frame)`` is the column count,
    ``frame.n_rows`` the row count."""

    def __init__(self, names, n_rows, get):
        self.names, self.n_rows, self._get = list(names), n_rows, get

    def __getitem__(self, name):
        if name not in self.names:
            raise KeyError(name)
        return self._get(name)

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)

    def without(self, *names):
        """The same frame without the columns ``names``."""
        return Frame([n for n in self.names if n not in names], self.n_rows, self._get)


def read_table(path):
    """The table at ``path`` (.csv with a header row, or .parquet) as a :class:`Frame`.

    Raises
    ------
    ValueError
        Naming the fault (and, for a CSV, its line and column where one is at fault): not UTF-8, a ragged
        row, duplicate or missing column names, no data rows; without pyarrow also a text or empty cell.
    OSError
        As ``open()`` does.
    """
    if os.path.splitext(path)[1].lower() == ".parquet":
        return _read_parquet(path)
    header = _header(path)
    # np.loadtxt first, fastnn's reader of old: it holds the table once (pyarrow's table and pool hold it nearly
    # twice, docs/performance.md), gives up at the first text or empty cell, and needs no pyarrow import.
    table = _loadtxt(path, header)
    if table is not None:
        return _numpy_frame(header, table)
    if not have_pyarrow():
        raise ValueError(_numbers_problem(path, header))
    return _read_csv_arrow(path, header)


def _header(path):
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often write a BOM
        try:
            header = next(csv.reader(f), None)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}") from None
        except csv.Error as exc:
            raise ValueError(f"line 1: not a readable CSV header: {exc}") from None
    if not header:
        raise ValueError("empty file; expected a header row naming the columns, then one row per sample")
    header = [name.strip() for name in header]
    _check_names(header)
    return header


def _check_names(header):
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(f"line 1: column names {duplicates} appear more than once")
    unnamed = [i + 1 for i, name in enumerate(header) if not name and i > 0]
    if unnamed:
        raise ValueError(f"line 1: column {unnamed[0]} has no name; every column but a leading index needs one")


def _read_csv_arrow(path, header):
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.csv as pcsv  # noqa: PLC0415

    read = pcsv.ReadOptions(skip_rows=1, column_names=header, use_threads=False)
    convert = pcsv.ConvertOptions(strings_can_be_null=True)
    try:
        try:
            # Block by block: the parser's buffers stay one block large (the whole-file reader peaks near three
            # times the table), and one thread was the faster on a busy 2-core machine (docs/performance.md).
            with pcsv.open_csv(path, read_options=read, convert_options=convert) as reader:
                table = pa.Table.from_batches(list(reader), schema=reader.schema)
        except pa.ArrowInvalid:  # a column's type guessed from the first block fails later: infer from all
            table = pcsv.read_csv(path, read_options=read, convert_options=convert)
    except pa.ArrowInvalid as exc:  # a ragged row, bad UTF-8: find it again row by row to name its line
        raise ValueError(_csv_problem(path, header, numbers=False) or f"not readable as CSV: {exc}") from None
    if table.num_rows == 0:
        raise ValueError("no data rows after the header")
    return _arrow_frame(table)


def _arrow_frame(table):
    import pyarrow as pa  # noqa: PLC0415

    def get(name):
        column = table.column(name)
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            column = column.cast(pa.string())  # dates, times, decimals: as their text
        if column.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            # each chunk's buffer viewed, one copy in all (to_numpy of many chunks stages them in arrow's pool)
            chunks = [chunk.to_numpy(zero_copy_only=True) for chunk in column.chunks]
            return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        values = column.to_numpy(zero_copy_only=False)
        if pa.types.is_null(kind):
            return np.full(len(values), None, dtype=object)
        return values

    return Frame(table.column_names, table.num_rows, get)


def _read_parquet(path):
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise ValueError("reading .parquet needs pyarrow: pip install 'fastnn[tables]'") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001  (pyarrow's errors for a damaged or foreign file are many)
        raise ValueError(f"not a readable Parquet file: {exc}") from None
    names = [str(n) for n in table.column_names]
    _check_names(names)
    if table.num_rows == 0:
        raise ValueError("no data rows")
    return _arrow_frame(table)


def _loadtxt(path, header):
    """The CSV's cells as a float64 ``(n_rows, n_columns)`` array, or None if they are not all finite numbers."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported by the caller
            table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64, comments=None,
                               quotechar='"', encoding="utf-8-sig")
    except ValueError:  # also UnicodeDecodeError
        return None
    if table.size and (table.shape[1] != len(header) or not np.isfinite(table).all()):
        return None
    return table


def _numpy_frame(header, table):
    if table.size == 0:
        raise ValueError("no data rows after the header")
    index = {name: j for j, name in enumerate(header)}
    return Frame(header, table.shape[0], lambda name: table[:, index[name]])


def _numbers_problem(path, header):
    """Without pyarrow, a CSV np.loadtxt refused: its first fault, found again row by row to name its line and
    column."""
    problem = _csv_problem(path, header, numbers=True)
    if problem and ("not a finite number" in problem or problem.endswith("empty")):
        problem += " (text columns and empty cells need pyarrow: pip install 'fastnn[tables]')"
    return problem or "not a table of numbers with the header's columns"


def _csv_problem(path, header, numbers):
    """Scan ``path`` row by row for the first ragged row, undecodable byte or (``numbers``) non-numeric cell;
    return a message naming its line, else None."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        try:
            return _first_bad_row(reader, header, numbers)
        except csv.Error as exc:  # an oversized field, a stray quote under strict rules
            return f"line {reader.line_num}: not readable as CSV: {exc}"
        except UnicodeDecodeError as exc:  # decoded a block at a time: the line is not known
            return f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} after line {reader.line_num}"


def _first_bad_row(reader, header, numbers):
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            return (f"line {reader.line_num}: {len(row)} fields, but the header has {len(header)} columns "
                    "(a ragged row)")
        if not numbers:
            continue
        for column, cell in zip(header, row):
            try:
                value = float(cell)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value):
                kind = "empty" if not cell.strip() else f"{cell!r} is not a finite number"
                return f"line {reader.line_num}, column {column!r}: {kind}"
    return None


def line_of_row(path, row):
    """The line of ``path`` (a CSV) that holds data row ``row`` (0-based; blank lines are skipped, as the readers
    skip them), or None for a file that is not a CSV."""
    if os.path.splitext(os.fspath(path))[1].lower() != ".csv":
        return None
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)
        seen = -1
        for fields in reader:
            if fields:
                seen += 1
                if seen == row:
                    return reader.line_num
    return None


def index_column(frame):
    """The name of ``frame``'s leading column if it is a pandas index (unnamed, distinct integers), else None."""
    if not frame.names or frame.names[0] not in _INDEX_NAMES:
        return None
    values = frame[frame.names[0]]
    if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
        values = values.astype(np.int64)
    if values.dtype.kind not in "iu" or np.unique(values).size != values.size:
        return None
    return frame.names[0]
