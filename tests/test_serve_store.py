"""The embedded store: idempotency across commits, restarts and failed transactions."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

import distillguard.serve.store as store_mod
from distillguard.serve.store import Store


def _rows(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"request_id": ids, "account_id": ["a"] * len(ids), "_line": list(range(1, len(ids) + 1))})


def test_commit_returns_only_new_rows_and_survives_a_conflicting_batch(tmp_path):
    st = Store(tmp_path)
    assert st.commit(_rows(["r1", "r2"]), {"next_line": "3"})["request_id"].to_list() == ["r1", "r2"]
    # A resend that overlaps new rows keeps the new ones only.
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


def test_a_failed_commit_leaves_its_ids_acceptable(tmp_path, monkeypatch):
    st = Store(tmp_path)
    assert st.commit(_rows(["r1"])).height == 1

    def broken(df):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod, "_encode", broken)
    with pytest.raises(OSError):
        st.commit(_rows(["r2", "r3"]))
    monkeypatch.undo()
    # Nothing of the failed batch was stored or indexed: its resend is accepted in full.
    assert st.commit(_rows(["r2", "r3", "r1"]))["request_id"].to_list() == ["r2", "r3"]
    assert st.counts() == (3, 2)
    st.close()


def test_a_store_with_the_former_ids_table_opens_with_its_ids_refused(tmp_path):
    st = Store(tmp_path)
    st.commit(_rows(["r1", "r2"]), {"next_line": "3"})
    st.close()
    con = duckdb.connect(str(tmp_path / store_mod.STORE_FILE))  # as the previous version left it
    con.execute("CREATE TABLE ids (hi UBIGINT, lo UBIGINT, PRIMARY KEY (hi, lo))")
    con.execute("INSERT INTO ids SELECT md5_number_upper(x), md5_number_lower(x) FROM (VALUES ('r1'), ('r2')) t(x)")
    con.close()
    st = Store(tmp_path)
    assert st.counts() == (2, 1)
    assert st.commit(_rows(["r2", "r9"]))["request_id"].to_list() == ["r9"]
    st.close()
    con = duckdb.connect(str(tmp_path / store_mod.STORE_FILE))
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'ids'").fetchone()[0] == 0
    con.close()


def test_chunks_written_before_a_compact_column_existed_still_load(tmp_path):
    """A state directory from before ``f_ctx`` was added: its chunks lack the column, newer ones
    have it; loading reads the old rows' value as null (which the marks treat as before)."""
    st = Store(tmp_path)
    st.commit(_rows(["r1", "r2"]))
    st.commit(_rows(["r3"]).with_columns(pl.lit(True).alias("f_ctx")))
    df = st.load()
    assert df["request_id"].to_list() == ["r1", "r2", "r3"]
    assert df["f_ctx"].to_list() == [None, None, True]
    st.close()
