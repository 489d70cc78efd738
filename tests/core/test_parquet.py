"""Parquet datasets: the same examples as the JSONL equivalent, and the same row errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lpft_core.data import parquet
from lpft_core.data.datasets import examples_from_file, read_examples
from lpft_core.data.fields import FieldMap
from lpft_core.errors import DataError
from tests.conftest import toy_rows, write_jsonl


def write_parquet(path: Path, columns: dict[str, pa.Array | list], **options: object) -> Path:
    pq.write_table(pa.table(columns), path, **options)
    return path


def as_columns(rows: list[dict]) -> dict[str, list]:
    return {name: [row.get(name) for row in rows] for name in rows[0]}


@pytest.mark.parametrize("pair", [False, True])
def test_parquet_gives_the_examples_of_the_same_jsonl(tmp_path: Path, pair: bool) -> None:
    rows = toy_rows(10, seed=0, pair=pair)
    from_jsonl = read_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    from_parquet = read_examples(write_parquet(tmp_path / "d.parquet", as_columns(rows)))
    assert from_parquet == from_jsonl
    assert [e.line for e in from_parquet] == list(range(1, 11))
    assert (from_parquet[0].text_pair is not None) is pair


def test_integer_large_string_and_dictionary_columns_read_as_jsonl_values(
    tmp_path: Path,
) -> None:
    path = write_parquet(
        tmp_path / "d.parquet",
        {
            "text": pa.array(["a b", "c d", "e f"], type=pa.large_string()),
            "label": pa.array([0, 1, 0], type=pa.int8()),
        },
    )
    examples = read_examples(path)
    assert [(e.text, e.label) for e in examples] == [("a b", 0), ("c d", 1), ("e f", 0)]
    assert all(type(e.label) is int for e in examples)
    categorical = pa.array(["pos", "neg", "pos"]).dictionary_encode()
    path = write_parquet(tmp_path / "c.parquet", {"text": ["a", "b", "c"], "label": categorical})
    assert [e.label for e in read_examples(path)] == ["pos", "neg", "pos"]


def test_rows_are_numbered_across_record_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet, "BATCH_ROWS", 2)
    texts = ["a", "b", "c", "d", None, "f"]
    path = write_parquet(
        tmp_path / "d.parquet", {"text": texts, "label": ["x"] * 6}, row_group_size=3
    )
    with pytest.raises(DataError, match="d.parquet, line 5, field 'text': missing 'text'"):
        read_examples(path)


@pytest.mark.parametrize(
    ("columns", "line", "field", "fragment"),
    [
        ({"text": ["ok", "  "], "label": ["a", "b"]}, 2, "text", "text is empty"),
        ({"text": ["ok", "x"], "label": ["a", None]}, 2, "label", "missing label"),
        ({"text": [1, 2], "label": ["a", "b"]}, 1, "text", "text must be a string, got int"),
        ({"text": ["ok", "x"], "label": [1.0, 2.0]}, 1, "label", "string or an integer"),
        ({"text": ["ok", "x"], "label": [True, False]}, 1, "label", "string or an integer"),
        ({"text": [b"ok", b"x"], "label": ["a", "b"]}, 1, "text", "got bytes"),
        (
            {"text": ["ok", "x"], "text_pair": ["y", None], "label": ["a", "a"]},
            2,
            "text_pair",
            "all single texts or all pairs",
        ),
        ({"text": ["ok", "x\x00y"], "label": ["a", "a"]}, 2, "text", "NUL"),
    ],
)
def test_nulls_and_wrong_types_give_the_jsonl_row_errors(
    tmp_path: Path, columns: dict, line: int, field: str, fragment: str
) -> None:
    path = write_parquet(tmp_path / "train.parquet", columns)
    with pytest.raises(DataError) as info:
        read_examples(path)
    error = info.value
    assert (error.source, error.line, error.field) == ("train.parquet", line, field)
    assert fragment in str(error)


def test_mapped_columns_are_read_and_named_in_errors(tmp_path: Path) -> None:
    fields = FieldMap(text="premise", text_pair="hypothesis", label="entailment")
    columns = {
        "premise": ["a", "b"],
        "hypothesis": ["c", "d"],
        "entailment": [1, 0],
        "idx": [0, 1],
    }
    examples = read_examples(write_parquet(tmp_path / "rte.parquet", columns), fields=fields)
    assert [(e.text, e.text_pair, e.label) for e in examples] == [("a", "c", 1), ("b", "d", 0)]
    bad = write_parquet(tmp_path / "bad.parquet", {**columns, "premise": ["a", ""]})
    with pytest.raises(DataError) as info:
        read_examples(bad, fields=fields)
    assert (info.value.line, info.value.field) == (2, "premise")
    assert "column 'premise' (text_field) is empty" in str(info.value)


def test_a_mapped_column_absent_from_the_file_names_the_option_and_the_columns(
    tmp_path: Path,
) -> None:
    path = write_parquet(tmp_path / "d.parquet", {"sentence": ["a"], "label": ["x"]})
    with pytest.raises(DataError) as info:
        read_examples(path, fields=FieldMap(text="sentense"))
    assert info.value.field == "text_field"
    assert "text_field names column 'sentense'" in str(info.value)
    assert "['sentence', 'label']" in str(info.value)
    with pytest.raises(DataError, match="no 'text' column") as info:
        read_examples(path)
    assert info.value.field == "text"


def test_bytes_that_are_not_parquet_are_refused_as_a_file(tmp_path: Path) -> None:
    fake = tmp_path / "fake.parquet"
    fake.write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    truncated = tmp_path / "truncated.parquet"
    whole = write_parquet(tmp_path / "whole.parquet", {"text": ["a"] * 50, "label": ["x"] * 50})
    truncated.write_bytes(whole.read_bytes()[:-40])
    for path in (fake, truncated):
        with pytest.raises(DataError, match="not a readable Parquet file") as info:
            read_examples(path)
        assert (info.value.source, info.value.line, info.value.field) == (path.name, None, None)


def test_row_limit_and_decompressed_size_are_checked_before_rows_are_read(
    tmp_path: Path,
) -> None:
    path = write_parquet(tmp_path / "d.parquet", {"text": ["a"] * 5, "label": ["x"] * 5})
    with open(path, "rb") as handle, pytest.raises(DataError, match=r"more than 4 rows \(5\)"):
        parquet.parquet_records(handle, "d.parquet", FieldMap(), max_text_chars=100, max_rows=4)
    bomb = write_parquet(
        tmp_path / "bomb.parquet",
        {"text": ["a" * 3_000_000], "label": ["x"]},
        compression="zstd",
        use_dictionary=False,
    )
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match="decompress to"):
        read_examples(bomb, max_text_chars=1000)


def test_invalid_utf8_in_a_string_column_is_a_data_error(tmp_path: Path) -> None:
    broken = pa.array([b"fine text", b"\xff\xfe not utf-8"], type=pa.binary()).view(pa.string())
    path = write_parquet(tmp_path / "d.parquet", {"text": broken, "label": [0, 1]})
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_examples(path)


def test_text_that_decodes_past_the_cap_is_refused_before_it_becomes_python(
    tmp_path: Path,
) -> None:
    # One long string repeated: its dictionary page stays small, and so does the file, but
    # every row decodes to the whole string.
    long = "word " * 2000
    text = pa.array([long] * 5000).dictionary_encode()
    path = write_parquet(tmp_path / "d.parquet", {"text": text, "label": [0, 1] * 2500})
    assert path.stat().st_size < 200_000
    with path.open("rb") as handle:
        with pytest.raises(DataError, match="decode to more than 10000000 bytes"):
            examples_from_file(handle, "d.parquet", max_decoded_bytes=10_000_000)
    with path.open("rb") as handle:
        assert len(examples_from_file(handle, "d.parquet", max_decoded_bytes=100_000_000)) == 5000
