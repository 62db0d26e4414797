"""The demo network that `manage.py seed_demo` writes, planned in memory from one random seed.

Planning is pure Python (no database), so the same seed and card count always give the same plan:
the same organization names, sites, clusters, models per cluster, node counts and prices. Only
timestamps (heartbeats, maintenance windows) are relative to the moment of seeding.

Everything here is invented demo data: the provider and buyer names are made up and do not stand
for real companies. Prices are plausible 2024-25 rental prices in China, not quotes.
"""

import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils.text import slugify

DEMO_PASSWORD = "computeflow-demo"  # noqa: S105 - the documented password of the demo logins
DEMO_DOMAIN = "demo.computeflow.test"  # every seeded user's email ends with it (see --reset)
DEMO_LOGINS = {
    "buyer": f"buyer@{DEMO_DOMAIN}",
    "provider": f"provider@{DEMO_DOMAIN}",
    "finance": f"finance@{DEMO_DOMAIN}",
    "operator": f"operator@{DEMO_DOMAIN}",
}
# The demo buyer's SSH public key (ssh-keygen -t ed25519; the private half was never kept, so nobody can
# log in with it - it only shows the SSH keys page and what provisioning hands to machines).
DEMO_BUYER_SSH_PUBLIC_KEY = (
    f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKw02CF1JWBYPUvjBnDrzY0Pmo6oqlp8Z7vM86RH0Ccn buyer@{DEMO_DOMAIN}"
)

SITE_COUNT = 53
# The demo provider login owns this many sites; the other providers share the rest.
DEMO_PROVIDER_SITES = 7
OTHER_PROVIDER_SITES = [8, 6, 6, 5, 5, 5, 4, 4, 3]  # nine more providers: ten in all, 53 sites
# Lifecycles: the demo provider's sites first (so that the demo login always has capacity online).
DEMO_PROVIDER_LIFECYCLES = ["online"] * 5 + ["under_construction", "planned"]
OTHER_LIFECYCLES = ["online"] * 40 + ["planned"] * 2 + ["under_construction"] * 2 + ["retired"] * 2
USD_PER_CNY = Decimal("1") / Decimal("7.20")  # a fixed demo rate; USD offers are priced at seeding, never converted later

# (name, short name used in site names). Invented operators of "smart computing centers".
PROVIDER_POOL = [
    ("Yunhe Computing Networks", "Yunhe"),
    ("Xisuan Intelligent Computing", "Xisuan"),
    ("Tianlan Data Infrastructure", "Tianlan"),
    ("Qianyuan AIDC Group", "Qianyuan"),
    ("Lanhai Cloud Data Centers", "Lanhai"),
    ("Shanhe Digital Infrastructure", "Shanhe"),
    ("Zhongrui Supercomputing", "Zhongrui"),
    ("Beichen Green Compute", "Beichen"),
    ("Jinqiao Smart Computing", "Jinqiao"),
    ("Hongtu Data Harbor", "Hongtu"),
    ("Guangling Computing Power", "Guangling"),
    ("Pearl Bay Compute", "Pearl Bay"),
    ("Xingyao AI Data Centers", "Xingyao"),
    ("Huanyu Computing Grid", "Huanyu"),
]

# (name, time zone of its people). Invented AI startups that rent capacity.
BUYER_POOL = [
    ("Lingxi Intelligence", "Asia/Shanghai"),
    ("Shenlan Biocompute", "Asia/Shanghai"),
    ("Qiming Robotics", "Asia/Shanghai"),
    ("Meridian Labs Pte. Ltd.", "Asia/Singapore"),
    ("Zhixing Autonomous Driving", "Asia/Shanghai"),
    ("Tidewater Speech AI", "Asia/Hong_Kong"),
    ("Northstar Vision GmbH", "Europe/Berlin"),
]
BUYER_ORG_COUNT = 4

FAMILY_NAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo"]
GIVEN_NAMES = ["Lei", "Na", "Wei", "Yang", "Jing", "Fan", "Min", "Tao", "Xin", "Hao", "Ting", "Qiang", "Lin", "Yi", "Jun", "Rui", "Yun", "Feng", "Ming", "Xue"]

# Cities by province (ISO 3166-2), the national-hub clusters first.
CITIES = {
    "CN-BJ": ["Beijing Yizhuang", "Beijing Haidian"], "CN-TJ": ["Tianjin Binhai"], "CN-HE": ["Zhangjiakou", "Langfang"],
    "CN-SX": ["Taiyuan", "Datong"], "CN-NM": ["Helinger", "Ulanqab"], "CN-LN": ["Shenyang", "Dalian"],
    "CN-JL": ["Changchun"], "CN-HL": ["Harbin"], "CN-SH": ["Shanghai Qingpu", "Shanghai Lingang"],
    "CN-JS": ["Suzhou Wujiang", "Nanjing"], "CN-ZJ": ["Jiaxing Jiashan", "Hangzhou"], "CN-AH": ["Wuhu", "Hefei"],
    "CN-FJ": ["Fuzhou", "Xiamen"], "CN-JX": ["Nanchang"], "CN-SD": ["Jinan", "Qingdao"], "CN-HA": ["Zhengzhou"],
    "CN-HB": ["Wuhan"], "CN-HN": ["Changsha"], "CN-GD": ["Shaoguan", "Guangzhou", "Shenzhen"], "CN-GX": ["Nanning"],
    "CN-HI": ["Haikou"], "CN-CQ": ["Chongqing Liangjiang"], "CN-SC": ["Chengdu Tianfu", "Ya'an"],
    "CN-GZ": ["Gui'an", "Guiyang"], "CN-YN": ["Kunming"], "CN-XZ": ["Lhasa"], "CN-SN": ["Xi'an"],
    "CN-GS": ["Qingyang", "Lanzhou"], "CN-QH": ["Xining"], "CN-NX": ["Zhongwei", "Yinchuan"],
    "CN-XJ": ["Urumqi", "Karamay"], "CN-HK": ["Hong Kong Tseung Kwan O"], "CN-MO": ["Macao"],
}
SITE_SUFFIXES = ["AIDC", "Intelligent Computing Center", "Computing Hub", "Data Center"]
CERTIFICATIONS = ["ISO 27001", "ISO 22301", "ISO 14001", "Uptime Tier III", "Uptime Tier IV", "MLPS Level 3", "GB 50174 Class A"]

# Base rental price in CNY per card-hour, by catalog model name (plausible 2024-25 market levels).
# Models missing here (Google TPUs, which are not sold to Chinese data centers) are never placed.
BASE_PRICE_CNY = {
    "H100 SXM5 80GB": "22.00", "H100 PCIe 80GB": "16.00", "H200 SXM 141GB": "28.00", "H20 96GB": "7.50",
    "H800 SXM5 80GB": "18.00", "A100 SXM4 80GB": "9.50", "A800 SXM4 80GB": "9.00", "L40S 48GB": "6.50",
    "L20 48GB": "3.80", "GeForce RTX 4090 24GB": "2.40", "B200 (HGX, 1000W)": "42.00",
    "Instinct MI300X 192GB": "19.00", "Instinct MI250X 128GB (OAM)": "8.00",
    "Gaudi 2 (HL-225H OAM)": "7.00", "Gaudi 3 (HL-325L OAM)": "14.00",
    "Ascend 910B (generic / Atlas 800T A2)": "9.00", "Ascend 910B1": "10.00", "Ascend 910B2": "9.80",
    "Ascend 910B3": "8.80", "Ascend 910B4 (32GB) / 910B4-1 (64GB)": "6.50", "Ascend 910C": "20.00",
    "Ascend 310P3 (Atlas 300I Pro card, 1 chip)": "1.60", "Atlas 300I Duo (2x Ascend 310P)": "3.00",
    "MLU370-X8": "3.50", "MLU590 (MLU590-M9 OAM)": "7.50", "DCU Z100 (Shensuan-1)": "2.50",
    "DCU K100 (Shensuan-2)": "4.00", "DCU K100-AI": "5.50", "Xiyun C500": "6.00", "MTT S4000 48GB": "3.50",
    "BR100 (OAM)": "9.00", "BR104 (PCIe)": "4.50", "Tiangai 150 (BI-V150)": "5.00", "CloudBlazer T20": "3.50",
    "CloudBlazer i20": "1.50", "CloudBlazer S60": "4.00", "Kunlun R200 (2nd gen)": "2.20",
    "Kunlun P800 (3rd gen)": "8.50",
}
# How common each model is in Chinese smart computing centers (relative weights).
MODEL_WEIGHT = {
    "Ascend 910B (generic / Atlas 800T A2)": 10, "H20 96GB": 8, "H800 SXM5 80GB": 6, "A800 SXM4 80GB": 6,
    "Ascend 910B2": 5, "A100 SXM4 80GB": 5, "L20 48GB": 5, "GeForce RTX 4090 24GB": 5, "H100 SXM5 80GB": 4,
    "Ascend 910B3": 4, "Ascend 910B4 (32GB) / 910B4-1 (64GB)": 3, "Ascend 910C": 3, "L40S 48GB": 3,
    "MLU370-X8": 3, "DCU K100-AI": 3, "Xiyun C500": 3, "Kunlun P800 (3rd gen)": 3,
}  # every other priced model: 1
# One model of each of these architectures is placed whatever the seed (20 architectures, 11 vendors).
MUST_PLACE = [
    "H100 SXM5 80GB", "H20 96GB", "A800 SXM4 80GB", "L20 48GB", "B200 (HGX, 1000W)", "Instinct MI300X 192GB",
    "Gaudi 2 (HL-225H OAM)", "Gaudi 3 (HL-325L OAM)", "Ascend 910B (generic / Atlas 800T A2)", "Ascend 910C",
    "Ascend 310P3 (Atlas 300I Pro card, 1 chip)", "MLU370-X8", "DCU K100-AI", "Xiyun C500", "MTT S4000 48GB",
    "BR104 (PCIe)", "Tiangai 150 (BI-V150)", "CloudBlazer S60", "Kunlun P800 (3rd gen)", "GeForce RTX 4090 24GB",
]
# Inference cards sit on plain Ethernet; they are rented by the hour.
INFERENCE_MODELS = {
    "L20 48GB", "GeForce RTX 4090 24GB", "L40S 48GB", "Ascend 310P3 (Atlas 300I Pro card, 1 chip)",
    "Atlas 300I Duo (2x Ascend 310P)", "CloudBlazer i20", "Kunlun R200 (2nd gen)", "BR104 (PCIe)", "H100 PCIe 80GB",
}

# Node hardware by software stack: (CPU model, cores per server).
CPUS = {
    "cuda": [("Intel Xeon Platinum 8480+", 112), ("Intel Xeon Platinum 8468", 96), ("AMD EPYC 9654", 192), ("AMD EPYC 7763", 128)],
    "rocm": [("AMD EPYC 9654", 192), ("AMD EPYC 9474F", 96)],
    "synapseai": [("Intel Xeon Platinum 8480+", 112), ("Intel Xeon Platinum 8380", 80)],
    "cann": [("HiSilicon Kunpeng 920-7265", 192), ("HiSilicon Kunpeng 920-5250", 192)],
    "dtk": [("Hygon C86 7390", 64), ("Hygon C86 7490", 128)],
}
DEFAULT_CPUS = [("Intel Xeon Gold 6430", 64), ("Hygon C86 7390", 64), ("Intel Xeon Platinum 8358", 64)]
DRIVERS = {
    "cuda": ("550.127.08", {"cuda": "12.4", "nccl": "2.21.5"}),
    "rocm": ("6.8.5", {"rocm": "6.2.4", "rccl": "2.20.5"}),
    "cann": ("24.1.rc3", {"cann": "8.0.RC3", "hccl": "8.0.RC3"}),
    "neuware": ("5.10.29", {"neuware": "3.15.0", "cncl": "1.19.0"}),
    "dtk": ("6.3.8", {"dtk": "24.04.2"}),
    "maca": ("2.27.0", {"maca": "2.27.0"}),
    "musa": ("2.7.0", {"musa": "3.1.0", "mccl": "1.7.0"}),
    "birensupa": ("1.5.3", {"birensupa": "1.5.3"}),
    "corex": ("3.2.1", {"corex": "3.2.1", "ixccl": "3.2.1"}),
    "synapseai": ("1.18.0", {"synapseai": "1.18.0"}),
    "topsrider": ("3.2.109", {"topsrider": "3.2.109", "eccl": "3.2.0"}),
    "kunlun": ("5.0.21", {"xre": "5.0.21", "bkcl": "5.0"}),
}

# Node status mix (cumulative probability): mostly online, a few in maintenance or offline.
NODE_STATUS_MIX = [(0.90, "online"), (0.94, "maintenance"), (0.97, "offline"), (0.985, "unhealthy"), (1.0, "registered")]


@dataclass
class PersonPlan:
    email: str
    full_name: str
    time_zone: str
    role: str = "owner"  # Membership.Role in the organization (the first person is the owner)
    groups: list[str] = field(default_factory=list)
    is_staff: bool = False
    is_superuser: bool = False


@dataclass
class OrganizationPlan:
    name: str
    kind: str  # Organization.Kind
    people: list[PersonPlan]  # people[0] owns it
    short: str = ""


@dataclass
class SitePlan:
    provider_index: int
    name: str
    code: str  # short, lower-case, used in hostnames
    province_code: str
    city: str
    lifecycle: str
    power_capacity_mw: Decimal
    pue: Decimal
    certifications: list[str]


@dataclass
class ClusterPlan:
    site_index: int
    name: str
    fabric: str
    fabric_bandwidth_gbps: int


@dataclass
class PoolPlan:
    """Nodes of one model in one cluster, and the offer that prices them."""

    cluster_index: int
    model_name: str
    cards_per_server: int
    nodes: int = 1
    price_minor: int = 0
    currency: str = "CNY"
    min_duration_hours: int = 1
    max_duration_hours: int = 24 * 90


@dataclass
class NetworkPlan:
    seed: int
    providers: list[OrganizationPlan]
    buyers: list[OrganizationPlan]
    staff: list[PersonPlan]
    sites: list[SitePlan]
    clusters: list[ClusterPlan]
    pools: list[PoolPlan]

    @property
    def cards(self) -> int:
        return sum(pool.nodes * pool.cards_per_server for pool in self.pools)


def minimum_cards(online_sites: int = 45) -> int:
    """The smallest --cards that still puts one 8-card node in every online site."""
    return online_sites * 8


def _person(rng: random.Random, *, domain: str, time_zone: str, used: set[str], email: str | None = None) -> PersonPlan:
    family, given = rng.choice(FAMILY_NAMES), rng.choice(GIVEN_NAMES)
    if email is None:
        local, n = f"{given}.{family}".lower(), 1
        while f"{local}@{domain}" in used:
            n += 1
            local = f"{given}.{family}{n}".lower()
        email = f"{local}@{domain}"
    used.add(email)
    return PersonPlan(email=email, full_name=f"{family} {given}", time_zone=time_zone)


def _slug(name: str) -> str:
    return slugify(name)


def _plan_organizations(rng: random.Random) -> tuple[list[OrganizationPlan], list[OrganizationPlan], list[PersonPlan]]:
    used: set[str] = set()
    providers = []
    for i, (name, short) in enumerate(rng.sample(PROVIDER_POOL, 1 + len(OTHER_PROVIDER_SITES))):
        domain = f"{_slug(short)}.{DEMO_DOMAIN}"
        owner = _person(rng, domain=domain, time_zone="Asia/Shanghai", used=used,
                        email=DEMO_LOGINS["provider"] if i == 0 else None)
        engineer = _person(rng, domain=domain, time_zone="Asia/Shanghai", used=used)
        engineer.role = "member"
        providers.append(OrganizationPlan(name=name, short=short, kind="provider", people=[owner, engineer]))
    buyers = []
    for i, (name, time_zone) in enumerate(rng.sample(BUYER_POOL, BUYER_ORG_COUNT)):
        domain = f"{_slug(name.split()[0])}.{DEMO_DOMAIN}"
        owner = _person(rng, domain=domain, time_zone=time_zone, used=used, email=DEMO_LOGINS["buyer"] if i == 0 else None)
        people = [owner]
        for role in ["member", "finance_viewer"][: rng.randint(1, 2)]:
            person = _person(rng, domain=domain, time_zone=time_zone, used=used)
            person.role = role
            people.append(person)
        buyers.append(OrganizationPlan(name=name, kind="buyer", people=people))
    finance = _person(rng, domain=DEMO_DOMAIN, time_zone="Asia/Shanghai", used=used, email=DEMO_LOGINS["finance"])
    finance.groups = ["finance"]
    # The operator runs the network from Beijing time and is the Django admin (/admin/).
    operator = _person(rng, domain=DEMO_DOMAIN, time_zone="Asia/Shanghai", used=used, email=DEMO_LOGINS["operator"])
    operator.groups, operator.is_staff, operator.is_superuser = ["operator"], True, True
    return providers, buyers, [finance, operator]


def _province_weight(province: dict) -> float:
    """Sites lean towards the national hubs, the western resource hubs most."""
    if province["code"] in ("CN-XZ", "CN-MO"):
        return 0.3
    if province["hub_role"] == "resource":
        return 5.0
    if province["hub_role"] == "demand":
        return 4.0 if province["hub_cluster"] else 3.0
    return 0.7 if province["code"] == "CN-HK" else 1.0


def _plan_sites(rng: random.Random, providers: list[OrganizationPlan], provinces: list[dict]) -> list[SitePlan]:
    site_counts = [DEMO_PROVIDER_SITES, *rng.sample(OTHER_PROVIDER_SITES, len(OTHER_PROVIDER_SITES))]
    other_lifecycles = OTHER_LIFECYCLES[:]
    rng.shuffle(other_lifecycles)
    lifecycles = [*DEMO_PROVIDER_LIFECYCLES, *other_lifecycles]
    weights = [_province_weight(p) for p in provinces]
    sites: list[SitePlan] = []
    for provider_index, count in enumerate(site_counts):
        provider = providers[provider_index]
        names: set[str] = set()
        for _ in range(count):
            province = rng.choices(provinces, weights=weights)[0]
            city = rng.choice(CITIES[province["code"]])
            base = f"{provider.short} {city} {rng.choice(SITE_SUFFIXES)}"
            name, phase = base, 1
            while name in names:
                phase += 1
                name = f"{base} Phase {phase}"
            names.add(name)
            lifecycle = lifecycles[len(sites)]
            west = province["hub_role"] == "resource"
            pue = Decimal(rng.uniform(1.12, 1.25) if west else rng.uniform(1.20, 1.40)).quantize(Decimal("0.01"))
            sites.append(
                SitePlan(
                    provider_index=provider_index,
                    name=name,
                    code=f"{_slug(provider.short)[:4]}-{province['code'][3:].lower()}{len(sites) + 1:02d}",
                    province_code=province["code"],
                    city=city,
                    lifecycle=lifecycle,
                    power_capacity_mw=Decimal(rng.randrange(40, 1200)) / 10,
                    pue=pue,
                    certifications=sorted(rng.sample(CERTIFICATIONS, rng.randint(1, 3))),
                )
            )
    return sites


def _fabric_for(model_name: str, rng: random.Random) -> tuple[str, int]:
    """Scale-out fabric and per-node bandwidth (Gbit/s) that a cluster of this model is built with."""
    if model_name in INFERENCE_MODELS:
        return "ethernet", rng.choice([100, 200])
    if model_name in ("H100 SXM5 80GB", "H200 SXM 141GB", "H800 SXM5 80GB", "B200 (HGX, 1000W)", "H20 96GB"):
        return rng.choice([("infiniband", 3200), ("infiniband", 3200), ("roce", 3200)])
    if model_name in ("A100 SXM4 80GB", "A800 SXM4 80GB", "Instinct MI300X 192GB", "Instinct MI250X 128GB (OAM)"):
        return rng.choice([("infiniband", 1600), ("roce", 1600)])
    if model_name.startswith("Gaudi 3"):
        return "roce", 4800  # Gaudi scales out over its integrated Ethernet ports
    if model_name.startswith("Gaudi"):
        return "roce", 2400
    if model_name.startswith("Ascend 910C"):
        return "roce", 3200
    if model_name.startswith("Ascend 910B"):
        return "roce", 1600  # Atlas 800T A2: 8 x 200GE RoCE
    return rng.choice([("roce", 800), ("roce", 400), ("ethernet", 200)])


def _weighted_model(rng: random.Random, names: list[str]) -> str:
    return rng.choices(names, weights=[MODEL_WEIGHT.get(name, 1) for name in names])[0]


def _price_minor(rng: random.Random, model_name: str, province: dict) -> int:
    """CNY fen per card-hour: the model's base price, +-15% per provider, cheaper in the western hubs."""
    regional = Decimal("0.90") if province["hub_role"] == "resource" else Decimal("1.05") if province["hub_role"] == "demand" else Decimal("1")
    factor = Decimal(rng.randrange(85, 121)) / 100
    cny = Decimal(BASE_PRICE_CNY[model_name]) * regional * factor
    return int((cny * 10).quantize(Decimal("1"), rounding=ROUND_HALF_UP)) * 10  # whole jiao


def plan_network(*, seed: int, cards: int, provinces: list[dict], cards_per_server: dict[str, int]) -> NetworkPlan:
    """The whole demo network for `seed`, with about `cards` cards (never more).

    `provinces`: dicts with code / hub_role / hub_cluster, ordered by code.
    `cards_per_server`: catalog model name -> cards per server.
    """
    rng = random.Random(seed)
    providers, buyers, staff = _plan_organizations(rng)
    sites = _plan_sites(rng, providers, provinces)
    province_by_code = {p["code"]: p for p in provinces}
    placeable = sorted(name for name in BASE_PRICE_CNY if name in cards_per_server)

    # Clusters: every online site gets one; the second pass adds more clusters and mixed clusters.
    # The first pass places every MUST_PLACE model, so the architectures do not depend on the seed.
    online = [i for i, site in enumerate(sites) if site.lifecycle == "online"]
    must = [name for name in MUST_PLACE if name in cards_per_server]
    first_models = must + [_weighted_model(rng, placeable) for _ in range(max(0, len(online) - len(must)))]
    rng.shuffle(first_models)
    clusters: list[ClusterPlan] = []
    first_pools: list[PoolPlan] = []
    extra_pools: list[PoolPlan] = []
    letters = "abcdefgh"
    for site_index, model_name in zip(online, first_models, strict=False):
        extra_clusters = rng.choices([0, 1, 2], weights=[3, 5, 2])[0]
        for c in range(1 + extra_clusters):
            model = model_name if c == 0 else _weighted_model(rng, placeable)
            fabric, bandwidth = _fabric_for(model, rng)
            short = {"infiniband": "ib", "roce": "roce", "ethernet": "eth"}[fabric]
            clusters.append(ClusterPlan(site_index=site_index, name=f"{short}-{letters[c]}", fabric=fabric, fabric_bandwidth_gbps=bandwidth))
            pool = PoolPlan(cluster_index=len(clusters) - 1, model_name=model, cards_per_server=cards_per_server[model])
            (first_pools if c == 0 else extra_pools).append(pool)
            if rng.random() < 0.25:  # a second model in the same fabric, e.g. inference cards beside training ones
                second = _weighted_model(rng, placeable)
                if second != model:
                    extra_pools.append(PoolPlan(cluster_index=len(clusters) - 1, model_name=second, cards_per_server=cards_per_server[second]))

    # Keep only as many pools as the card budget can give one node each (small --cards).
    pools = list(first_pools)
    budget = cards - sum(p.cards_per_server for p in pools)
    for pool in extra_pools:
        if pool.cards_per_server <= budget:
            pools.append(pool)
            budget -= pool.cards_per_server
    used_clusters = sorted({p.cluster_index for p in pools})
    renumber = {old: new for new, old in enumerate(used_clusters)}
    clusters = [clusters[i] for i in used_clusters]
    for pool in pools:
        pool.cluster_index = renumber[pool.cluster_index]
    pools.sort(key=lambda p: (p.cluster_index, p.model_name))

    # Share the remaining cards: by model popularity and a per-pool size draw (some pools are big).
    weights = [MODEL_WEIGHT.get(p.model_name, 1) * rng.lognormvariate(0, 0.6) for p in pools]
    total_weight = sum(weights)
    remainders = []
    for pool, weight in zip(pools, weights, strict=True):
        share = budget * weight / total_weight
        extra_nodes = int(share // pool.cards_per_server)
        pool.nodes += extra_nodes
        remainders.append(share - extra_nodes * pool.cards_per_server)
    left = cards - sum(p.nodes * p.cards_per_server for p in pools)
    for i in sorted(range(len(pools)), key=lambda i: -remainders[i]):
        if pools[i].cards_per_server <= left:
            pools[i].nodes += 1
            left -= pools[i].cards_per_server

    # Offers: one per pool. A few are priced in USD for international buyers.
    for pool in pools:
        province = province_by_code[sites[clusters[pool.cluster_index].site_index].province_code]
        pool.price_minor = _price_minor(rng, pool.model_name, province)
        if pool.model_name in INFERENCE_MODELS:
            pool.min_duration_hours, pool.max_duration_hours = 1, 24 * rng.choice([30, 90])
        else:
            pool.min_duration_hours = rng.choice([1, 1, 4, 24])
            pool.max_duration_hours = 24 * rng.choice([30, 90, 180])
    usd_count = max(2, len(pools) // 25)
    for i in rng.sample(range(len(pools)), min(usd_count, len(pools))):
        pool = pools[i]
        pool.currency = "USD"
        pool.price_minor = max(1, int((Decimal(pool.price_minor) * USD_PER_CNY).quantize(Decimal("1"), rounding=ROUND_HALF_UP)))
    for pool in pools:
        province = province_by_code[sites[clusters[pool.cluster_index].site_index].province_code]
        if province["code"] in ("CN-HK", "CN-MO") and pool.currency == "CNY":
            pool.currency = "USD"
            pool.price_minor = max(1, int((Decimal(pool.price_minor) * USD_PER_CNY).quantize(Decimal("1"), rounding=ROUND_HALF_UP)))

    return NetworkPlan(seed=seed, providers=providers, buyers=buyers, staff=staff, sites=sites, clusters=clusters, pools=pools)


@dataclass
class NodeDraw:
    status: str
    heartbeat_age: timedelta | None
    cpu_model: str
    cpu_cores: int
    ram_gb: int
    disk_gb: int


def node_draws(rng: random.Random, *, stack: str, memory_gb: int | None, count: int) -> list[NodeDraw]:
    """Hardware and status of `count` nodes of one pool (one CPU platform per pool, as bought)."""
    cpu_model, cpu_cores = rng.choice(CPUS.get(stack, DEFAULT_CPUS))
    ram_gb = rng.choice([1024, 2048]) if (memory_gb or 0) >= 64 else rng.choice([512, 1024])
    disk_gb = rng.choice([7680, 15360, 30720])
    draws = []
    for _ in range(count):
        roll = rng.random()
        status = next(name for limit, name in NODE_STATUS_MIX if roll < limit)
        if status == "online":
            age = timedelta(seconds=rng.randint(3, 60))
        elif status == "registered":
            age = None
        elif status == "maintenance":
            age = timedelta(minutes=rng.randint(1, 90))
        else:
            age = timedelta(hours=rng.randint(2, 72))
        draws.append(NodeDraw(status=status, heartbeat_age=age, cpu_model=cpu_model, cpu_cores=cpu_cores, ram_gb=ram_gb, disk_gb=disk_gb))
    return draws
