"""The embedded store: idempotency keys and the optimistic insert."""

from __future__ import annotations

import duckdb
import polars as pl

from distillguard.serve.store import _HI_LO, Store


def _rows(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"request_id": ids, "account_id": ["a"] * len(ids), "_line": list(range(1, len(ids) + 1))})


def test_one_md5_gives_the_upper_and_lower_halves_of_existing_stores():
    con = duckdb.connect()
    con.register("_dg_ids", pl.DataFrame({"request_id": ["abc", "r-000001", "ü✓\x00x", ""]}).to_arrow())
    split = con.sql(f"SELECT {_HI_LO}").fetchall()
    pair = con.sql("SELECT md5_number_upper(request_id), md5_number_lower(request_id) FROM _dg_ids").fetchall()
    assert split == pair


def test_commit_returns_only_new_rows_and_survives_a_conflicting_batch(tmp_path):
    st = Store(tmp_path)
    assert st.commit(_rows(["r1", "r2"]), {"next_line": "3"})["request_id"].to_list() == ["r1", "r2"]
    # A resend that overlaps: the optimistic insert conflicts, the transaction restarts and keeps r3 only.
    new = st.commit(_rows(["r2", "r3", "r1"]), {"next_line": "6"})
    assert new["request_id"].to_list() == ["r3"]
    assert st.commit(_rows(["r1", "r3"]), {"next_line": "8"}).height == 0
    assert st.counts() == (3, 2)
    assert st.meta("next_line") == "8"
    st.close()
    st = Store(tmp_path)  # durable, and the index still refuses the old ids
    assert sorted(st.load()["request_id"].to_list()) == ["r1", "r2", "r3"]
    assert st.commit(_rows(["r3", "r4"]))["request_id"].to_list() == ["r4"]
    st.close()
