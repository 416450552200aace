"""Import of a user's own files (ingest/importer.py, ingest/readers.py) with planted bad rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.deadletter import read_dead_letters
from common.lake import read_catalog, read_events, read_users, write_catalog
from common.lake_schemas import CATALOG_ARROW_SCHEMA
from common.paths import DataPaths
from common.schemas import Reason
from ingest.importer import import_files
from ingest.readers import type_cell

EVENTS_CSV = """\
event_id,domain,user_id,item_id,event_type,timestamp,request_id,position,value,quantity
e1,retail,r_u1,r_i1,purchase,2026-06-01T10:00:00Z,,,19.5,2
e2,banking,b_u1,b_card,view,1780308000,,,,
e3,retail,r_u2,r_i2,impression,2026-06-02T08:30:00+02:00,req-7,3,,
e1,retail,r_u1,r_i9,view,2026-06-01T11:00:00Z,,,,
e4,retail,b_u9,r_i1,view,2026-06-01T11:00:00Z,,,,
e5,retail,r_u1,r_i1,like,2026-06-01T11:00:00Z,,,,
e6,retail,r_u1,r_i1,view,not a time,,,,
e7,retail,r_u1,r_i1,purchase,2026-06-01T11:00:00Z,,,-5,1
e8,retail,r_u1,r_i1,impression,2026-06-01T11:00:00Z,req-8,abc,,
e9,retail,r_u1,,view,2026-06-01T11:00:00Z,,,,
e10,movielens,ml_u1,ml_m1,view,2026-06-01T11:00:00Z,,,,
e11,retail,r_u1,r_i1,view,2026-06-01T11:00:00Z,,,,,surplus
"""
EVENTS_EXPECTED_REJECTS = {
    Reason.DUPLICATE_EVENT_ID: 1,
    Reason.WRONG_ID_PREFIX: 1,
    Reason.UNKNOWN_EVENT_TYPE: 1,
    Reason.TIMESTAMP_UNPARSEABLE: 1,
    Reason.NEGATIVE_VALUE: 1,
    Reason.WRONG_TYPE: 1,
    Reason.MISSING_FIELD: 1,
    Reason.INVALID_VALUE: 2,  # read-only domain, surplus cell
}

CATALOG_CSV = """\
item_id,domain,title,description,category,price,margin,inventory,launched_at,min_age,requires_no_arrears,excludes
r_i1,retail,Trail shoe v2,Lighter,Footwear>Running>Trail,129.0,0.35,8,2026-01-01,,,
b_loan,banking,Personal loan,Up to 20k,Lending>Personal,0,0.02,1000000,2025-06-01T00:00:00Z,18,true,b_loan_car|b_loan_home
r_i3,retail,Sock,Warm,Apparel>Socks,abc,0.5,3,2026-01-01,,,
r_i1,retail,Trail shoe v3,Again,Footwear>Running>Trail,1,0.1,1,2026-01-01,,,
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _users_parquet(path: Path) -> Path:
    table = pa.table(
        {
            "user_id": ["b_u1", "r_u1", "b_u2", "x9"],
            "domain": ["banking", "retail", "banking", "retail"],
            "signed_up_at": pa.array([datetime(2025, 1, 1, tzinfo=UTC)] * 4, pa.timestamp("us", tz="UTC")),
            "age": pa.array([34, None, -3, 40], pa.int32()),
            "country": [None, "DE", None, "FR"],
            "products_held": [["b_card"], None, [], None],
        }
    )
    pq.write_table(table, path)
    return path


def test_csv_events_counts_dead_letters_and_lake(data_paths: DataPaths, tmp_path: Path) -> None:
    report = import_files(data_paths, events=_write(tmp_path / "events.csv", EVENTS_CSV))
    events = report.kinds["events"]
    assert (events.read, events.accepted) == (12, 3)
    assert dict(events.rejected) == EVENTS_EXPECTED_REJECTS
    assert (report.read, report.accepted, report.rejected) == (12, 3, 9)
    assert dict(events.accepted_by_domain) == {"retail": 2, "banking": 1}

    dead = list(read_dead_letters(data_paths, "import"))
    assert len(dead) == 9 and events.dead_letter_file.is_file()
    assert sorted(d["record"]["event_id"] for d in dead) == sorted(f"e{i}" for i in [1, 4, 5, 6, 7, 8, 9, 10, 11])
    duplicate = next(d for d in dead if d["reason"]["code"] == Reason.DUPLICATE_EVENT_ID)
    assert duplicate["record"]["item_id"] == "r_i9"  # the later row is the reject, kept raw (text cells)
    negative = next(d for d in dead if d["reason"]["code"] == Reason.NEGATIVE_VALUE)
    assert negative["record"]["value"] == "-5" and negative["source"] == "import"
    surplus = next(d for d in dead if d["record"]["event_id"] == "e11")
    assert surplus["record"]["__extra__"] == ["surplus"]

    retail = read_events(data_paths, "retail").set_index("event_id")
    assert sorted(retail.index) == ["e1", "e3"]
    assert (retail.loc["e1", "value"], retail.loc["e1", "quantity"]) == (19.5, 2)
    assert (retail.loc["e3", "request_id"], retail.loc["e3", "position"]) == ("req-7", 3)
    assert retail.loc["e3", "timestamp"] == datetime(2026, 6, 2, 6, 30, tzinfo=UTC)
    banking = read_events(data_paths, "banking")
    assert banking["timestamp"].tolist() == [datetime(2026, 6, 1, 10, tzinfo=UTC)]  # epoch text

    text = report.render()
    assert "read 12, accepted 3, rejected 9" in text and "rejected duplicate_event_id: 1" in text
    assert str(events.dead_letter_file) in text


def test_parquet_events_append_beside_earlier_imports(data_paths: DataPaths, tmp_path: Path) -> None:
    import_files(data_paths, events=_write(tmp_path / "events.csv", EVENTS_CSV))
    table = pa.table(
        {
            "event_id": ["p1", "p2", "p1", "p3"],
            "domain": ["retail"] * 4,
            "user_id": ["r_u5", "r_u5", "r_u5", "r_u5"],
            "item_id": ["r_i1", "r_i2", "r_i3", "r_i4"],
            "event_type": ["view", "add_to_cart", "view", "view"],
            "timestamp": pa.array(
                [datetime(2026, 6, 1, 12), datetime(2026, 6, 3, 9), datetime(2026, 6, 3, 9), datetime(2099, 1, 1)],
                pa.timestamp("us"),
            ),
            "quantity": pa.array([None, 1, None, None], pa.int32()),
        }
    )
    pq.write_table(table, tmp_path / "more.parquet")
    report = import_files(data_paths, events=tmp_path / "more.parquet")
    events = report.kinds["events"]
    assert (events.read, events.accepted) == (4, 2)
    assert dict(events.rejected) == {Reason.DUPLICATE_EVENT_ID: 1, Reason.TIMESTAMP_IN_FUTURE: 1}
    retail = read_events(data_paths, "retail")
    assert sorted(retail["event_id"]) == ["e1", "e3", "p1", "p2"]  # both imports kept
    assert len(list((data_paths.events / "domain=retail" / "date=2026-06-01").glob("*.parquet"))) == 2
    future = next(d for d in read_dead_letters(data_paths, "import") if d["reason"]["code"] == Reason.TIMESTAMP_IN_FUTURE)
    assert future["record"]["event_id"] == "p3" and future["record"]["timestamp"].startswith("2099-01-01")


def test_catalog_csv_merges_by_id(data_paths: DataPaths, tmp_path: Path) -> None:
    old = [
        {"item_id": "r_i0", "domain": "retail", "title": "Old boot", "description": "", "category": "Footwear",
         "price": 50.0, "margin": 0.2, "inventory": 1, "launched_at": datetime(2024, 1, 1, tzinfo=UTC)},
        {"item_id": "r_i1", "domain": "retail", "title": "Trail shoe v1", "description": "", "category": "Footwear",
         "price": 99.0, "margin": 0.2, "inventory": 5, "launched_at": datetime(2024, 1, 1, tzinfo=UTC)},
    ]
    write_catalog(pa.Table.from_pylist(old, schema=CATALOG_ARROW_SCHEMA), data_paths, "retail")
    report = import_files(data_paths, catalog=_write(tmp_path / "catalog.csv", CATALOG_CSV))
    catalog = report.kinds["catalog"]
    assert (catalog.read, catalog.accepted) == (4, 2)
    assert dict(catalog.rejected) == {Reason.WRONG_TYPE: 1, Reason.INVALID_VALUE: 1}
    retail = read_catalog(data_paths, "retail").set_index("item_id")
    assert sorted(retail.index) == ["r_i0", "r_i1"]
    assert (retail.loc["r_i1", "title"], retail.loc["r_i1", "price"], retail.loc["r_i1", "inventory"]) == ("Trail shoe v2", 129.0, 8)
    assert retail.loc["r_i0", "title"] == "Old boot"
    loan = read_catalog(data_paths, "banking").set_index("item_id").loc["b_loan"]
    assert list(loan["excludes"]) == ["b_loan_car", "b_loan_home"]
    assert (loan["min_age"], loan["requires_no_arrears"]) == (18, True)
    assert set(report.kinds) == {"catalog"} and data_paths.catalog("banking") in catalog.lake_paths


def test_users_parquet_and_all_three_kinds(data_paths: DataPaths, tmp_path: Path) -> None:
    report = import_files(
        data_paths,
        events=_write(tmp_path / "events.csv", EVENTS_CSV),
        catalog=_write(tmp_path / "catalog.csv", CATALOG_CSV),
        users=_users_parquet(tmp_path / "users.parquet"),
    )
    users = report.kinds["users"]
    assert (users.read, users.accepted) == (4, 2)
    assert dict(users.rejected) == {Reason.NEGATIVE_VALUE: 1, Reason.WRONG_ID_PREFIX: 1}
    banking = read_users(data_paths, "banking")
    assert banking["user_id"].tolist() == ["b_u1"] and list(banking["products_held"][0]) == ["b_card"]
    assert read_users(data_paths, "retail")["country"].tolist() == ["DE"]
    assert (report.read, report.accepted, report.rejected) == (20, 7, 13)
    files = {rep.dead_letter_file.name for rep in report.kinds.values()}
    assert files == {f"{report.import_id}-{kind}.jsonl" for kind in ("events", "catalog", "users")}
    assert len(list(read_dead_letters(data_paths, "import"))) == 13


def test_bad_invocations(data_paths: DataPaths, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to import"):
        import_files(data_paths)
    with pytest.raises(FileNotFoundError):
        import_files(data_paths, users=tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="unsupported file type"):
        import_files(data_paths, users=_write(tmp_path / "users.txt", "user_id\n"))


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("3", pa.int32(), 3),
        ("3.5", pa.int32(), 3.5),  # left for the validator to refuse as an integer
        ("abc", pa.int64(), "abc"),
        ("inf", pa.float64(), "inf"),  # non-finite stays text -> wrong_type
        ("1e3", pa.float64(), 1000.0),
        ("1780308000", pa.timestamp("us", tz="UTC"), 1780308000.0),
        ("2026-06-01", pa.timestamp("us", tz="UTC"), "2026-06-01"),
        ("TRUE", pa.bool_(), True),
        ("no", pa.bool_(), False),
        ("maybe", pa.bool_(), "maybe"),
        ("a| b |", pa.list_(pa.string()), ["a", "b"]),
        ("x", None, "x"),
    ],
)
def test_csv_cell_typing(text: str, kind: pa.DataType | None, expected: object) -> None:
    assert type_cell(text, kind) == expected
