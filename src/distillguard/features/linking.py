"""Linking accounts into clusters: shared payment, networks, clients, domains, templates.

Each account–key pair becomes active at the first time the account showed the key (for
templates: when a third distinct prompt new to the whole log used the same frame, most of
the frame's uses were such new prompts, and the frame carries at least ``TEMPLATE_SHARE`` of the
account's distinct prompts so far, so neither a one-off coincidence, nor a popular question, nor
a public template filled with items others already sent links anything). At a cluster
epoch E the clusters are the connected components of the bipartite account–key graph built from
pairs active at E, skipping keys held by fewer than two accounts and keys so common by E that
they say nothing about coordination (public mail domains, carrier-NAT ranges, popular SDK
templates). Computed with scipy's connected components, so an epoch costs O(pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

FREE_MAIL = {
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
    "ymail.com", "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de",
    "mail.com", "qq.com", "163.com", "126.com", "sina.com", "yandex.ru", "mail.ru", "naver.com",
    "web.de", "zoho.com", "fastmail.com", "tutanota.com", "hey.com",
}

# Most accounts one key may link before it counts as common (per key kind).
KEY_CAP = {"pf": 200, "org": 500, "net": 120, "dom": 40, "tpl": 150}
TEMPLATE_REUSE = 3
# A frame links accounts only while it frames at least this share of the account's distinct
# prompts: a campaign's wrapper frames nearly all of them; a popular public question that a
# router's users happened to send three times with different follow-ups is content, not a
# template, and would otherwise tie together everyone who ever asked it.
TEMPLATE_SHARE = 0.2
# ... and only with prompts new to the whole log: at least ``TEMPLATE_REUSE`` of them and this
# share of the frame's uses by the account. A template that many unrelated accounts use (an
# evaluation harness's, a popular framework's) is common knowledge, like a popular question:
# evaluators re-running one public benchmark under it send items someone already sent, and
# are not linked by it; accounts that split a sweep under a private wrapper each send new
# items, and are.
TEMPLATE_NEW_SHARE = 0.5
# A sign-up domain that links accounts on this many networks (ASNs) is a public mail service (a
# relay such as duck.com, a regional webmail the list above lacks), not one organisation: its
# domain keys say nothing about coordination.
DOMAIN_PUBLIC_NETWORKS = 5
# Item-space keys (``marks.item_space_rows``) are no links: they name what an account asks, not
# who it is, and would chain unrelated clusters together. The replay groups their holders apart
# (``ITEM_SPACE_CAP`` of them at most per space) and judges each group with "sweep" rules.
ITEM_SPACE_KIND = "space"
ITEM_SPACE_CAP = 400


def split_item_spaces(pairs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(link pairs, item-space pairs) of ``link_pairs``' output."""
    is_space = pl.col("kind") == ITEM_SPACE_KIND
    return pairs.filter(~is_space), pairs.filter(is_space)

def link_pairs(rows: pl.DataFrame) -> pl.DataFrame:
    """(account_id, key, kind, first_ts) for every key shared by at least two accounts in the log.

    ``rows`` are the per-bucket ``marks.link_rows`` concatenated.
    """
    if rows.height == 0:
        return rows.with_columns(pl.lit("").alias("kind"))
    return (
        rows.filter(pl.len().over("key") >= 2)
        .with_columns(pl.col("key").str.split(":").list.first().alias("kind"))
        .sort("first_ts")
    )


@dataclass
class LinkGraph:
    """Account–key pairs as integer arrays, so each cluster epoch is a few vectorised passes."""

    acc: np.ndarray  # account index per pair
    key: np.ndarray  # key code per pair
    first_ts: np.ndarray  # when the pair became active
    cap: np.ndarray  # per key code: most accounts before the key counts as common
    n_accounts: int
    domain: np.ndarray | None = None  # per key code: its sign-up domain's code, -1 for other kinds

    @classmethod
    def build(cls, pairs: pl.DataFrame, account_index: dict[str, int], cap: int | None = None) -> "LinkGraph":
        """``cap``: one cap for every key (item-space groups); default: per kind (``KEY_CAP``)."""
        if pairs.height == 0:
            z = np.zeros(0, dtype=np.int64)
            return cls(z, z, z, z, len(account_index))
        acc = pairs["account_id"].replace_strict(account_index, return_dtype=pl.Int64).to_numpy()
        keys, key = np.unique(pairs["key"].to_numpy(), return_inverse=True)
        kinds = pl.Series(keys).str.split(":").list.first()
        caps = kinds.replace_strict(KEY_CAP, default=100, return_dtype=pl.Int64).to_numpy()
        if cap is not None:
            caps = np.full(len(keys), cap, dtype=np.int64)
        dom = pl.Series(keys).str.extract(r"^dom:(.*)\|[^|]*$")
        domain = np.where(dom.is_null().to_numpy(), -1, dom.fill_null("").rank("dense").cast(pl.Int64).to_numpy())
        return cls(acc, key.astype(np.int64), pairs["first_ts"].to_numpy(), caps, len(account_index), domain)

    def components_at(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(component label per account, mask of accounts linked to another) at ``epoch``."""
        n = self.n_accounts
        act = self.first_ts <= epoch
        if not act.any():
            return np.arange(n), np.zeros(n, dtype=bool)
        deg = np.bincount(self.key[act], minlength=len(self.cap))
        keep = act & (deg[self.key] >= 2) & (deg[self.key] <= self.cap[self.key])
        if self.domain is not None and (self.domain >= 0).any():
            # Networks each domain was seen from so far (its active dom|asn keys).
            seen = np.zeros(len(self.cap), dtype=bool)
            seen[self.key[act]] = True
            d = self.domain
            nets = np.bincount(d[seen & (d >= 0)], minlength=int(d.max()) + 1)
            public = (d >= 0) & (nets[np.maximum(d, 0)] >= DOMAIN_PUBLIC_NETWORKS)
            keep &= ~public[self.key]
        if not keep.any():
            return np.arange(n), np.zeros(n, dtype=bool)
        acc, key = self.acc[keep], self.key[keep]
        m = len(self.cap)
        g = coo_matrix((np.ones(len(acc)), (acc, n + key)), shape=(n + m, n + m))
        _, labels = connected_components(g, directed=False)
        linked = np.zeros(n, dtype=bool)
        linked[acc] = True
        return labels[:n], linked


def components_at(pairs: pl.DataFrame, epoch: int, account_index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels at ``epoch`` for the accounts in ``account_index`` (see ``LinkGraph``)."""
    return LinkGraph.build(pairs, account_index).components_at(epoch)
