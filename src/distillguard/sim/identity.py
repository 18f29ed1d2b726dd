"""Who is calling and from where: accounts, payment instruments, networks, user agents.

The simulated internet is a fixed table of networks (built from a constant seed, so it is
the same in every run and split): residential ISPs, mobile carriers behind carrier-grade
NAT, cloud/datacenter providers, corporate and campus networks, VPN exits and proxy
providers. Each has an ASN, a country and a few address prefixes. Accounts draw addresses
from these networks the way real clients do:

* a home user keeps one address for days; a mobile user gets a new address from the
  carrier's shared NAT pool almost every session, shared with unrelated users;
* a server keeps one to a few addresses in one cloud ASN;
* a residential-proxy customer gets a fresh address in a random ISP, anywhere, per request.

ASNs, prefixes, domains and fingerprints are synthetic: they look real, identify nobody.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from distillguard.sim.rng import short_id

# country -> (UTC offset in hours used for diurnal schedules, weight among consumers)
COUNTRIES: dict[str, tuple[float, float]] = {
    "US": (-6, 22),
    "CA": (-5, 3),
    "MX": (-6, 2),
    "BR": (-3, 5),
    "AR": (-3, 1),
    "GB": (0, 5),
    "DE": (1, 5),
    "FR": (1, 4),
    "ES": (1, 3),
    "IT": (1, 2),
    "NL": (1, 2),
    "PL": (1, 2),
    "SE": (1, 1),
    "TR": (3, 2),
    "RU": (3, 2),
    "UA": (2, 1),
    "EG": (2, 1),
    "NG": (1, 2),
    "KE": (3, 1),
    "ZA": (2, 1),
    "SA": (3, 1),
    "AE": (4, 1),
    "IN": (5.5, 9),
    "PK": (5, 1),
    "BD": (6, 1),
    "ID": (7, 3),
    "VN": (7, 2),
    "TH": (7, 1),
    "PH": (8, 2),
    "SG": (8, 1),
    "MY": (8, 1),
    "HK": (8, 1),
    "TW": (8, 1),
    "KR": (9, 3),
    "JP": (9, 4),
    "AU": (10, 2),
    "NZ": (12, 1),
    "CL": (-4, 1),
    "CO": (-5, 1),
}
CLOUD_COUNTRIES = ["US", "US", "US", "DE", "IE", "NL", "SG", "JP", "GB", "FR", "IN", "AU", "BR", "CA", "KR"]

FREE_MAIL = [
    ("gmail.com", 40),
    ("outlook.com", 8),
    ("hotmail.com", 6),
    ("yahoo.com", 6),
    ("icloud.com", 5),
    ("proton.me", 3),
    ("qq.com", 3),
    ("163.com", 2),
    ("gmx.de", 2),
    ("web.de", 1),
    ("yandex.ru", 2),
    ("mail.ru", 1),
    ("naver.com", 2),
    ("yahoo.co.jp", 1),
    ("live.com", 2),
    ("aol.com", 1),
    ("zoho.com", 1),
    ("tutanota.com", 1),
    ("orange.fr", 1),
    ("libero.it", 1),
]
# Throwaway and privacy-relay domains: also used by cautious ordinary people.
DISPOSABLE_MAIL = [
    "mailinator.com",
    "tempmail.dev",
    "guerrillamail.com",
    "10minutemail.net",
    "sharklasers.com",
    "dropmail.me",
    "maildrop.cc",
    "yopmail.com",
    "trashmail.io",
    "duck.com",
    "simplelogin.com",
]
EDU_MAIL = [
    "stanford.edu",
    "mit.edu",
    "cmu.edu",
    "ox.ac.uk",
    "ethz.ch",
    "tsinghua.edu.cn",
    "u-tokyo.ac.jp",
    "epfl.ch",
    "berkeley.edu",
    "uw.edu",
    "kaist.ac.kr",
    "iitb.ac.in",
    "tum.de",
    "mila.quebec",
    "nyu.edu",
    "utoronto.ca",
    "inria.fr",
    "ucl.ac.uk",
    "nus.edu.sg",
    "unimelb.edu.au",
]

_SYL = [
    "ar",
    "be",
    "ca",
    "do",
    "el",
    "fi",
    "ga",
    "ho",
    "in",
    "jo",
    "ka",
    "lu",
    "mo",
    "nu",
    "or",
    "pi",
    "qu",
    "ra",
    "so",
    "ta",
    "ul",
    "ve",
    "wi",
    "xo",
    "ya",
    "ze",
    "bri",
    "cor",
    "dex",
    "fen",
    "gro",
    "hal",
    "ion",
    "jet",
    "kin",
    "lum",
    "mer",
    "nov",
    "orb",
    "pax",
    "quo",
    "rix",
    "syn",
    "tek",
    "vox",
]
_WORDS = [
    "labs",
    "ai",
    "data",
    "cloud",
    "soft",
    "works",
    "tech",
    "analytics",
    "health",
    "logistics",
    "learning",
    "capital",
    "media",
    "systems",
    "bio",
    "robotics",
    "commerce",
    "legal",
    "games",
]
_TLDS = [".com", ".io", ".ai", ".co", ".dev", ".de", ".fr", ".co.uk", ".in", ".jp", ".com.br", ".net", ".app"]


def company_domain(rng: random.Random) -> str:
    """A made-up company domain such as ``kinorb-analytics.io``."""
    name = "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3)))
    if rng.random() < 0.6:
        name += ("-" if rng.random() < 0.5 else "") + rng.choice(_WORDS)
    return name + rng.choice(_TLDS)


def free_mail(rng: random.Random) -> str:
    return rng.choices([d for d, _ in FREE_MAIL], weights=[w for _, w in FREE_MAIL])[0]


def payment_fingerprint(*parts: object) -> str:
    """Opaque hash-like payment instrument id (reproducible from ``parts``)."""
    return "pf_" + short_id("card", *parts, length=20)


# ---------------------------------------------------------------------------------------
# user agents


def _v(rng: random.Random, major: int, minor_hi: int, patch_hi: int = 9) -> str:
    return f"{major}.{rng.randint(0, minor_hi)}.{rng.randint(0, patch_hi)}"


def sdk_user_agent(rng: random.Random, family: str | None = None) -> str:
    """An SDK / HTTP-client User-Agent string as real API clients send them."""
    fams = [
        "openai-python",
        "openai-node",
        "anthropic-python",
        "anthropic-typescript",
        "python-requests",
        "httpx",
        "curl",
        "litellm",
        "langchain",
        "go",
        "java",
        "aiohttp",
        "dotnet",
        "ruby",
    ]
    weights = [30, 12, 8, 5, 10, 6, 4, 6, 5, 3, 3, 4, 2, 1]
    f = family or rng.choices(fams, weights=weights)[0]
    if f == "openai-python":
        return f"OpenAI/Python {_v(rng, 1, 60, 12)}" if rng.random() < 0.7 else f"openai-python/{_v(rng, 1, 60, 12)}"
    if f == "openai-node":
        return f"OpenAI/JS {_v(rng, 4, 70, 9)}"
    if f == "anthropic-python":
        return f"anthropic-python/{_v(rng, 0, 45, 5)}"
    if f == "anthropic-typescript":
        return f"anthropic-typescript/{_v(rng, 0, 33, 5)}"
    if f == "python-requests":
        return f"python-requests/2.{rng.randint(25, 32)}.{rng.randint(0, 3)}"
    if f == "httpx":
        return f"python-httpx/0.{rng.randint(23, 28)}.{rng.randint(0, 2)}"
    if f == "curl":
        return f"curl/{rng.choice(['7.81.0', '7.88.1', '8.1.2', '8.4.0', '8.5.0', '8.7.1', '8.9.1'])}"
    if f == "litellm":
        return f"litellm/1.{rng.randint(30, 55)}.{rng.randint(0, 20)}"
    if f == "langchain":
        return f"langchain-openai/0.{rng.randint(1, 3)}.{rng.randint(0, 30)}"
    if f == "go":
        return "Go-http-client/2.0" if rng.random() < 0.7 else "Go-http-client/1.1"
    if f == "java":
        return f"Java-http-client/{rng.choice(['11.0.22', '17.0.10', '21.0.2'])}"
    if f == "aiohttp":
        return f"Python/3.{rng.randint(9, 12)} aiohttp/3.{rng.randint(8, 10)}.{rng.randint(0, 5)}"
    if f == "dotnet":
        return f"OpenAI/.NET {_v(rng, 2, 1, 0)}"
    return f"ruby-openai/{_v(rng, 7, 3, 0)}"


def browser_user_agent(rng: random.Random) -> str:
    """Browser UA, as sent by the web console / playground and by browser chat front-ends."""
    chrome = rng.randint(118, 131)
    return rng.choice(
        [
            f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome}.0.0.0 Safari/537.36",
            f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome}.0.0.0 Safari/537.36",
            f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{rng.randint(0, 6)} Safari/605.1.15",
            f"Mozilla/5.0 (X11; Linux x86_64; rv:{rng.randint(115, 132)}.0) Gecko/20100101 Firefox/{rng.randint(115, 132)}.0",
            f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome}.0.0.0 Safari/537.36 Edg/{chrome}.0.0.0",
        ]
    )


def app_user_agent(rng: random.Random) -> str:
    """Third-party chat apps and desktop tools that call the API with a user's own key."""
    return rng.choice(
        [
            f"ChatBox/{_v(rng, 1, 9)}",
            f"TypingMind/{_v(rng, 2, 9)}",
            f"Raycast/{_v(rng, 1, 80)}",
            f"obsidian-copilot/{_v(rng, 2, 7)}",
            f"BoltAI/{_v(rng, 1, 30)}",
            f"MindMac/{_v(rng, 1, 9)}",
            f"Zapier/{rng.randint(1, 3)}.0",
            f"n8n/{_v(rng, 1, 70)}",
            f"Make.com/{rng.randint(1, 3)}",
        ]
    )


def mobile_user_agent(rng: random.Random) -> str:
    """Mobile apps: OkHttp on Android, CFNetwork / app strings on iOS."""
    app = rng.choice(["Pocket Chat", "AskAnything", "Chatter", "NovaAI", "TalkGenie", "MindPal", "Lumi"])
    if rng.random() < 0.5:
        return f"okhttp/4.{rng.randint(9, 12)}.{rng.randint(0, 3)}"
    return f"{app.replace(' ', '')}/{rng.randint(100, 999)} CFNetwork/1{rng.randint(400, 499)}.0.{rng.randint(1, 9)} Darwin/2{rng.randint(2, 4)}.{rng.randint(0, 6)}.0"


def agent_user_agent(rng: random.Random) -> str:
    """Coding agents and IDE extensions."""
    return rng.choice(
        [
            f"aider/0.{rng.randint(50, 86)}.{rng.randint(0, 3)}",
            f"Continue/0.{rng.randint(8, 9)}.{rng.randint(0, 60)}",
            f"cline/{_v(rng, 3, 20)}",
            f"roo-code/{_v(rng, 3, 20)}",
            f"OpenHands/0.{rng.randint(10, 40)}",
            f"goose/1.{rng.randint(0, 9)}",
            f"anthropic-typescript/{_v(rng, 0, 33, 5)}",
            f"OpenAI/Python {_v(rng, 1, 60, 12)}",
        ]
    )


# ---------------------------------------------------------------------------------------
# networks


@dataclass(frozen=True)
class Network:
    """One autonomous system's address space as the simulator uses it.

    ``prefixes`` are IPv4 ``(base, length)`` pairs; ``v6`` is a /32 base as 2 hex groups.
    """

    asn: int
    kind: str  # residential | mobile | cloud | corporate | campus | vpn | proxy_dc
    country: str
    prefixes: tuple[tuple[int, int], ...]
    v6: str


_RESERVED_FIRST = {
    0,
    10,
    100,
    127,
    169,
    172,
    192,
    198,
    203,
    224,
    225,
    226,
    227,
    228,
    229,
    230,
    231,
    232,
    233,
    234,
    235,
    236,
    237,
    238,
    239,
    240,
    241,
    242,
    243,
    244,
    245,
    246,
    247,
    248,
    249,
    250,
    251,
    252,
    253,
    254,
    255,
}


@dataclass
class World:
    """All networks, indexed by kind and country."""

    networks: list[Network] = field(default_factory=list)
    by_kind: dict[str, list[Network]] = field(default_factory=dict)

    def pick(self, rng: random.Random, kind: str, country: str | None = None) -> Network:
        nets = self.by_kind[kind]
        if country is not None:
            local = [n for n in nets if n.country == country]
            if local and rng.random() < 0.9:
                return rng.choice(local)
        return rng.choice(nets)


def _build_world() -> World:
    rng = random.Random(20261101)
    used_asn: set[int] = set()
    used_prefix: list[tuple[int, int]] = []
    nets: list[Network] = []

    def asn() -> int:
        while True:
            a = rng.choice([rng.randint(1000, 64000), rng.randint(131072, 270000)])
            if a not in used_asn:
                used_asn.add(a)
                return a

    def prefix(length: int) -> tuple[int, int]:
        while True:
            first = rng.randint(2, 223)
            if first in _RESERVED_FIRST:
                continue
            base = (first << 24) | (rng.randint(0, 255) << 16) | (rng.randint(0, 255) << 8)
            base &= ~((1 << (32 - length)) - 1) & 0xFFFFFFFF
            end = base + (1 << (32 - length))
            # Networks never overlap: one address maps to exactly one ASN.
            if any(base < e and b < end for b, e in used_prefix):
                continue
            used_prefix.append((base, end))
            return base, length

    def v6() -> str:
        return f"2{rng.choice('4a6c')}{rng.randint(0, 15):x}{rng.randint(0, 15):x}:{rng.randint(0, 0xFFFF):x}"

    countries = list(COUNTRIES)
    for c in countries:
        for _ in range(2 if COUNTRIES[c][1] < 3 else 4):
            nets.append(
                Network(asn(), "residential", c, tuple(prefix(rng.choice([12, 13, 14])) for _ in range(3)), v6())
            )
        for _ in range(1 if COUNTRIES[c][1] < 3 else 2):
            # Carrier-grade NAT: few, large, heavily shared public pools.
            nets.append(Network(asn(), "mobile", c, (prefix(16),), v6()))
        nets.append(Network(asn(), "campus", c, (prefix(16),), v6()))
    for _ in range(14):
        nets.append(
            Network(
                asn(),
                "cloud",
                rng.choice(CLOUD_COUNTRIES),
                tuple(prefix(rng.choice([12, 14, 16])) for _ in range(4)),
                v6(),
            )
        )
    for _ in range(60):
        nets.append(
            Network(
                asn(),
                "corporate",
                rng.choices(countries, weights=[COUNTRIES[c][1] for c in countries])[0],
                (prefix(20),),
                v6(),
            )
        )
    for _ in range(10):
        nets.append(Network(asn(), "vpn", rng.choice(CLOUD_COUNTRIES), (prefix(18), prefix(18)), v6()))
    for _ in range(12):
        nets.append(
            Network(
                asn(),
                "proxy_dc",
                rng.choice(CLOUD_COUNTRIES + ["RU", "HK", "VN", "UA"]),
                (prefix(20), prefix(20)),
                v6(),
            )
        )
    w = World(nets, {})
    for n in nets:
        w.by_kind.setdefault(n.kind, []).append(n)
    return w


WORLD = _build_world()


def ipv4_in(rng: random.Random, net: Network, subnet: int | None = None) -> str:
    """A host address inside ``net`` (or inside its ``subnet``-th /24 when given)."""
    base, length = rng.choice(net.prefixes) if subnet is None else net.prefixes[subnet % len(net.prefixes)]
    size = 1 << (32 - length)
    if subnet is not None:
        off = ((subnet * 2654435761) % max(size // 256, 1)) * 256 + rng.randint(1, 254)
    else:
        off = rng.randint(1, size - 2)
    x = base + off
    return f"{x >> 24 & 255}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}"


def ipv6_in(rng: random.Random, net: Network, site: int) -> str:
    """An address in ``net``'s v6 space: ``site`` fixes the /64, the interface id rotates."""
    return (
        f"{net.v6}:{site >> 16 & 0xFFFF:x}:{site & 0xFFFF:x}:"
        f"{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}"
    )


class Egress:
    """Where an account's requests come from, and how that changes over time.

    Parameters
    ----------
    rng : random.Random
        The account's stream (addresses drawn per request use it).
    mode : str
        ``fixed`` (home/server: a small stable set), ``cgnat`` (new shared carrier-NAT
        address per session), ``rotate`` (new address per request, same network),
        ``residential_proxy`` (new address in a random ISP per request).
    nets : list of Network
        Networks the account uses.
    n_fixed : int
        Size of the stable address set for ``fixed``.
    v6_share : float
        Fraction of requests over IPv6 (dual-stack clients).
    """

    __slots__ = ("rng", "mode", "nets", "fixed", "v6_share", "site", "_session_ip", "_session_net")

    def __init__(self, rng: random.Random, mode: str, nets: list[Network], n_fixed: int = 1, v6_share: float = 0.0):
        if not nets:
            # A residential-proxy pool spans the whole consumer internet.
            nets = WORLD.by_kind["residential"] + WORLD.by_kind["mobile"]
        self.rng, self.mode, self.nets, self.v6_share = rng, mode, nets, v6_share
        self.site = rng.getrandbits(32)
        self.fixed = [(ipv4_in(rng, n), n) for n in (rng.choice(nets) for _ in range(max(n_fixed, 1)))]
        self._session_ip, self._session_net = self.fixed[0]

    def new_session(self) -> None:
        """A mobile client re-attaches: next requests come from a fresh NAT address."""
        if self.mode == "cgnat":
            net = self.rng.choice(self.nets)
            self._session_ip, self._session_net = ipv4_in(self.rng, net), net

    def address(self) -> tuple[str, Network]:
        """Address and network of the next request."""
        rng = self.rng
        if self.v6_share and rng.random() < self.v6_share:
            net = self.fixed[0][1] if self.mode == "fixed" else self._session_net
            return ipv6_in(rng, net, self.site), net
        if self.mode == "fixed":
            return self.fixed[0] if len(self.fixed) == 1 else rng.choice(self.fixed)
        if self.mode == "cgnat":
            if rng.random() < 0.15:  # NAT bindings also change mid-session
                self.new_session()
            return self._session_ip, self._session_net
        if self.mode == "residential_proxy":
            net = WORLD.pick(rng, rng.choice(["residential", "residential", "residential", "mobile"]))
            return ipv4_in(rng, net), net
        net = rng.choice(self.nets)
        return ipv4_in(rng, net), net


def account_id(*parts: object) -> str:
    """Opaque account id (reproducible from ``parts``)."""
    return "acct_" + short_id("acct", *parts, length=14)


def pick_country(rng: random.Random) -> str:
    cs = list(COUNTRIES)
    return rng.choices(cs, weights=[COUNTRIES[c][1] for c in cs])[0]


def tz_of(country: str) -> float:
    return COUNTRIES.get(country, (0, 0))[0]
