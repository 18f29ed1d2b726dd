"""Per-split parameters of every population and campaign.

The holdout split is meant to be reached only by a detector that generalises: its ranges
are shifted or widened against dev (rates, max_tokens, temperatures, accounts per cluster),
and a few attack styles exist only in holdout (``paraphrase`` wrappers, residential-proxy
rotation, harvest timing copied from a real API client's rate curve). Counts are account
numbers at ``scale=1``. Ranges ``(lo, hi)`` are drawn per account with
:func:`~distillguard.sim.rng.lognormal_between` unless noted, so no bound is a hard edge.

docs/benchmark.md describes these numbers; keep the two in step.
"""

from __future__ import annotations

PARAMS: dict[str, dict[str, dict]] = {
    "dev": {
        "chat_user": {"accounts": 2300, "sessions_per_day": (0.5, 5.0), "student_share": 0.03},
        "mobile_nat": {"accounts": 320, "sessions_per_day": (1.0, 6.0)},
        "shared_card": {"groups": 60, "household_share": 0.6},
        "coding_agent": {"accounts": 160, "sessions_per_day": (1.0, 5.0), "steps": (8, 90)},
        "app_backend": {"accounts": 45, "rps": (0.004, 0.035), "embed_share": 0.15},
        "router_reseller": {"accounts": 10, "rps": (0.025, 0.1), "p_continue": (0.3, 0.6)},
        "benchmark_eval": {"accounts": 36, "new_account_share": 0.35, "concurrency": (1, 16)},
        "tutor_product": {
            "accounts": 8,
            "rps": (0.006, 0.04),
            "markets": (1, 3),
            "followup_share": (0.2, 0.45),
            "popular_items": (150, 1500),
            "zipf": (0.8, 1.2),
            "languages": ["en", "en", "en", "es", "pt"],
        },
        "passk_eval": {
            "institutions": 10,
            "colleague_groups": 2,
            "group_size": (2, 5),
            "public_template_share": 0.7,
            "n": [8, 10, 16],
            "max_tokens": [16384, 32768, 65536],
            "temperature": [0.6, 0.8, 1.0],
            "items": (80, 400),
            "runs": (1, 3),
            "concurrency": (4, 32),
        },
        "blunt_sweep": {
            "campaigns": 6,
            "rps": (0.012, 0.08),
            "cv": (0.15, 0.6),
            "n": [1, 1, 2, 4],
            "max_tokens": [4096, 8192, 16384],
            "temperature": [0.7, 0.8, 1.0],
            "paraphrase": False,
            "curve_timing_share": 0.0,
        },
        "hydra": {
            "campaigns": 2,
            "accounts": (24, 40),
            "rps": (0.05, 0.15),
            "resold_share": (0.1, 0.35),
            "residential_proxy": [False, False],
            "paraphrase": [False, False],
            "shared_cards": (0.3, 0.6),
        },
        "cot_coercion": {
            "campaigns": 8,
            "accounts": (1, 4),
            "rps": (0.004, 0.025),
            "cot_share": (0.55, 1.0),
            "langs": (3, 8),
        },
        "rubric_harvest": {
            "campaigns": 5,
            "accounts": (1, 5),
            "rps": (0.003, 0.02),
            "logprobs_share": 0.4,
            "pair_share": (0.2, 0.6),
        },
        "multilingual": {"campaigns": 4, "accounts": (2, 6), "rps": (0.003, 0.015), "langs": (2, 4)},
        "slow_spread": {
            "campaigns": 2,
            "accounts": (30, 50),
            "sessions_per_day": (1.5, 4.0),
            "session_size": (4, 20),
            "paraphrase": [False, False],
        },
        "takeover": {
            "campaigns": 4,
            "accounts": (2, 5),
            "rps": (0.004, 0.025),
            "new_ip_share": 0.7,
            "residential_proxy": [False, False, False, False],
        },
        "reseller_mixed": {"accounts": 3, "harvest_share": (0.1, 0.3), "rps": (0.02, 0.06)},
        "agent_harvest": {
            # One entry per campaign: the variant (task space, hydra or few accounts, pace).
            "campaigns": [
                {"tasks": "coding", "accounts": (1, 3), "sessions_per_hour": (1.0, 3.0), "timing": "steady"},
                {
                    "tasks": "coding",
                    "accounts": (12, 30),
                    "sessions_per_hour": (0.1, 0.35),
                    "timing": "steady",
                },
                {
                    "tasks": "reasoning",
                    "accounts": (1, 4),
                    "sessions_per_hour": (3.0, 9.0),
                    "timing": "steady",
                },
                {
                    "tasks": "reasoning",
                    "accounts": (10, 20),
                    "sessions_per_hour": (0.5, 1.5),
                    "timing": "steady",
                },
            ],
            "max_steps": (15, 60),
            "step_gap_s": (1.5, 8.0),
            "residential_proxy": False,
            "agent_ua_share": 0.4,
        },
        "target_only_sweep": {
            "campaigns": [
                {
                    "space": ["gsm8k_train"],
                    "accounts": (8, 20),
                    "slices": "block",
                    "sessions_per_day": (1.0, 3.5),
                },
                {"space": ["math"], "accounts": (20, 45), "slices": "stride", "sessions_per_day": (0.5, 2.0)},
                {
                    "space": ["mbpp", "humaneval"],
                    "accounts": (5, 12),
                    "slices": "block",
                    "sessions_per_day": (2.5, 7.0),
                },
            ],
            "session_size": (3, 12),
            "followup_share": (0.0, 0.1),
            "typo_rate": (0.0, 0.04),
            "styles": (1, 3),
        },
    },
    "holdout": {
        "chat_user": {"accounts": 2100, "sessions_per_day": (0.6, 6.0), "student_share": 0.04},
        "mobile_nat": {"accounts": 300, "sessions_per_day": (1.2, 7.0)},
        "shared_card": {"groups": 50, "household_share": 0.5},
        "coding_agent": {"accounts": 140, "sessions_per_day": (1.2, 6.0), "steps": (6, 120)},
        "app_backend": {"accounts": 40, "rps": (0.003, 0.045), "embed_share": 0.2},
        "router_reseller": {"accounts": 9, "rps": (0.03, 0.12), "p_continue": (0.25, 0.65)},
        "benchmark_eval": {"accounts": 32, "new_account_share": 0.45, "concurrency": (2, 32)},
        "tutor_product": {
            "accounts": 7,
            "rps": (0.004, 0.05),
            "markets": (1, 4),
            "followup_share": (0.15, 0.5),
            "popular_items": (100, 2500),
            "zipf": (0.7, 1.3),
            "languages": ["en", "en", "hi", "fr", "id"],
        },
        "passk_eval": {
            "institutions": 9,
            "colleague_groups": 3,
            "group_size": (3, 6),
            "public_template_share": 0.6,
            "n": [6, 12, 16, 20],
            "max_tokens": [24000, 32000, 100000],
            "temperature": [0.7, 1.0, 1.2],
            "items": (60, 500),
            "runs": (1, 4),
            "concurrency": (2, 48),
        },
        "blunt_sweep": {
            "campaigns": 5,
            "rps": (0.01, 0.08),
            "cv": (0.4, 1.3),
            "n": [1, 1, 1, 3, 5],
            "max_tokens": [2048, 6000, 12000, None],
            "temperature": [0.6, 0.9, 1.1, None],
            "paraphrase": True,
            "curve_timing_share": 0.5,
        },
        "hydra": {
            "campaigns": 2,
            "accounts": (30, 70),
            "rps": (0.04, 0.18),
            "resold_share": (0.2, 0.5),
            "residential_proxy": [True, False],
            "paraphrase": [False, True],
            "shared_cards": (0.15, 0.4),
        },
        "cot_coercion": {
            "campaigns": 7,
            "accounts": (1, 5),
            "rps": (0.002, 0.014),
            "cot_share": (0.4, 0.9),
            "langs": (2, 10),
        },
        "rubric_harvest": {
            "campaigns": 4,
            "accounts": (1, 6),
            "rps": (0.002, 0.025),
            "logprobs_share": 0.25,
            "pair_share": (0.3, 0.8),
        },
        "multilingual": {"campaigns": 4, "accounts": (3, 8), "rps": (0.002, 0.012), "langs": (1, 3)},
        "slow_spread": {
            "campaigns": 2,
            "accounts": (40, 80),
            "sessions_per_day": (1.2, 3.5),
            "session_size": (3, 16),
            "paraphrase": [True, False],
        },
        "takeover": {
            "campaigns": 3,
            "accounts": (3, 6),
            "rps": (0.003, 0.02),
            "new_ip_share": 0.5,
            "residential_proxy": [True, False, False],
        },
        "reseller_mixed": {"accounts": 3, "harvest_share": (0.05, 0.2), "rps": (0.02, 0.07)},
        "agent_harvest": {
            "campaigns": [
                {"tasks": "coding", "accounts": (1, 4), "sessions_per_hour": (0.8, 4.0), "timing": "curve"},
                {
                    "tasks": "coding",
                    "accounts": (20, 50),
                    "sessions_per_hour": (0.06, 0.3),
                    "timing": "steady",
                },
                {
                    "tasks": "reasoning",
                    "accounts": (2, 5),
                    "sessions_per_hour": (2.0, 12.0),
                    "timing": "steady",
                },
                {"tasks": "mixed", "accounts": (15, 35), "sessions_per_hour": (0.3, 1.2), "timing": "curve"},
            ],
            "max_steps": (10, 80),
            "step_gap_s": (1.0, 12.0),
            "residential_proxy": True,
            "agent_ua_share": 0.7,
        },
        "target_only_sweep": {
            "campaigns": [
                {
                    "space": ["gsm8k_test", "math500"],
                    "accounts": (10, 30),
                    "slices": "stride",
                    "sessions_per_day": (2.0, 6.0),
                },
                {
                    "space": ["alpaca", "self_instruct_seed", "mt_bench", "vicuna_bench"],
                    "accounts": (30, 60),
                    "slices": "block",
                    "sessions_per_day": (0.4, 2.0),
                },
                {"space": ["mbpp"], "accounts": (5, 10), "slices": "stride", "sessions_per_day": (0.8, 4.5)},
            ],
            "session_size": (2, 15),
            "followup_share": (0.0, 0.15),
            "typo_rate": (0.0, 0.06),
            "styles": (1, 4),
        },
    },
}

BENIGN_POPULATIONS = (
    "chat_user",
    "mobile_nat",
    "shared_card",
    "coding_agent",
    "app_backend",
    "router_reseller",
    "benchmark_eval",
    "tutor_product",
    "passk_eval",
)
ATTACK_POPULATIONS = (
    "blunt_sweep",
    "hydra",
    "cot_coercion",
    "rubric_harvest",
    "multilingual",
    "slow_spread",
    "takeover",
    "reseller_mixed",
    "agent_harvest",
    "target_only_sweep",
)

# Chat prompt sources and their weights among benign conversations (missing sources drop out).
CHAT_SOURCE_WEIGHTS = {
    "sharegpt": 45,
    "oasst2": 12,
    "hh_rlhf": 14,
    "self_instruct_user": 8,
    "vicuna_bench": 3,
    "mt_bench": 2,
}

# Harvest material per campaign style (campaigns pick a few of these that exist).
HARVEST_SOURCES = {
    "reasoning": ["gsm8k_train", "gsm8k_test", "math", "math500"],
    "code": ["humaneval", "mbpp"],
    "instruct": ["alpaca", "self_instruct_seed", "mt_bench", "vicuna_bench"],
}
CODE_SOURCES = frozenset({"humaneval", "mbpp"})
