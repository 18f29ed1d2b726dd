"""Regenerate ``bundled/`` (the small, permissively licensed corpus subset) from shared/data.

Usage::

    python src/distillguard/data/make_bundle.py [PATH/TO/shared/data]

The output is deterministic (fixed row selection, gzip without timestamps), so running it
twice gives identical bytes. Files keep upstream field names and are stored flat as
``<source folder>__<file name>``; the simulator reads either layout. Only MIT, Apache-2.0
and CC-BY-4.0 sources are bundled (see ATTRIBUTION.md): no ShareGPT, Alpaca or the
Open-Paws oasst2 filter.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "bundled"


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
    return rows


def _write(name: str, data: bytes) -> None:
    buf = io.BytesIO()
    # mtime=0 and no file name in the header: identical bytes on every run.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    (OUT / name).write_bytes(buf.getvalue())


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _keep(row: dict, fields: list[str]) -> dict:
    return {k: row[k] for k in fields if k in row}


def _subset_jsonl(src: Path, folder: str, name: str, fields: list[str] | None, every: int = 1) -> None:
    rows = _read_jsonl(src / folder / name)[::every]
    if fields:
        rows = [_keep(r, fields) for r in rows]
    _write(f"{folder}__{name}", _jsonl(rows))


def _short(x: str) -> str:
    """Numbers to 6 significant digits (the trace's 17-digit floats triple the file size)."""
    try:
        return f"{float(x):.6g}"
    except ValueError:
        return x


def _servegen_traces(src: Path) -> None:
    """A few real clients per model (heavy 24/7 ones and diurnal ones), first 7 days."""
    for model in ("m-large", "m-mid", "m-small"):
        path = src / "alibaba_servegen" / f"language_{model}_client_traces.csv.gz"
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            by_client: dict[str, list[list[str]]] = {}
            for row in reader:
                by_client.setdefault(row[0], []).append(row)
        stats = []
        for cid, rows in by_client.items():
            rates = [float(r[2] or 0) for r in rows]
            busy = sum(1 for x in rates if x > 0) / len(rates)
            stats.append((cid, busy, sum(rates) / len(rates)))
        heavy = sorted((s for s in stats if s[1] >= 0.95), key=lambda s: (-s[2], int(s[0])))[:5]
        diurnal = sorted((s for s in stats if 0.4 <= s[1] < 0.95), key=lambda s: (-s[2], int(s[0])))[:3]
        keep = sorted({s[0] for s in heavy + diurnal}, key=int)
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(header)
        for cid in keep:
            for r in by_client[cid]:
                if int(r[1]) >= 7 * 86400:
                    continue
                w.writerow([r[0], r[1]] + [_short(x) for x in r[2:]])
        _write(f"alibaba_servegen__language_{model}_client_traces.csv.gz", out.getvalue().encode("utf-8"))


def _servegen_tokens(src: Path, clients: int = 12, windows: int = 4) -> None:
    path = src / "alibaba_servegen" / "language_m-small_client_datasets.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    out: dict[str, dict] = {}
    for cid in sorted(doc, key=lambda k: (len(k), k)):
        win = doc[cid]
        keys = [k for k in sorted(win, key=lambda k: (len(k), k)) if win[k].get("input_tokens") not in (None, "{}")]
        if not keys:
            continue
        step = max(1, len(keys) // windows)
        out[cid] = {k: win[k] for k in keys[::step][:windows]}
        if len(out) >= clients:
            break
    _write("alibaba_servegen__language_m-small_client_datasets.json.gz", json.dumps(out).encode("utf-8"))


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.gz"):
        old.unlink()
    _subset_jsonl(src, "gsm8k", "test.jsonl.gz", ["question", "answer"])
    _subset_jsonl(src, "gsm8k", "train.jsonl.gz", ["question", "answer"], every=5)
    _subset_jsonl(src, "math_eval_harness", "math_test.jsonl.gz", ["problem", "solution", "level", "type"], every=4)
    _subset_jsonl(
        src, "math_eval_harness", "math500_test.jsonl.gz", ["problem", "solution", "answer", "subject", "level"]
    )
    _subset_jsonl(src, "human_eval", "HumanEval.jsonl.gz", ["task_id", "prompt", "canonical_solution", "entry_point"])
    _subset_jsonl(src, "mbpp", "mbpp.jsonl.gz", ["task_id", "text", "code"])
    _subset_jsonl(src, "fastchat_mt_bench", "mt_bench_question.jsonl.gz", None)
    _subset_jsonl(src, "fastchat_mt_bench", "vicuna_bench_question.jsonl.gz", None)
    _subset_jsonl(src, "self_instruct", "seed_tasks.jsonl.gz", None)
    _subset_jsonl(src, "self_instruct", "user_oriented_instructions.jsonl.gz", None)
    _subset_jsonl(src, "anthropic_hh_rlhf", "harmless-base_test.jsonl.gz", ["chosen", "rejected"], every=3)
    _subset_jsonl(src, "mooncake", "conversation_trace.jsonl.gz", ["timestamp", "input_length", "output_length"])
    _subset_jsonl(src, "ragpulse", "0_trace.jsonl.gz", ["timestamp", "input_length", "output_length", "session_id"])
    for name in ("AzureLLMInferenceTrace_conv.csv.gz", "AzureLLMInferenceTrace_code.csv.gz"):
        with gzip.open(src / "azure_public_dataset" / name, "rb") as fh:
            _write(f"azure_public_dataset__{name}", fh.read())
    _servegen_traces(src)
    _servegen_tokens(src)
    total = sum(p.stat().st_size for p in OUT.glob("*.gz"))
    print(f"wrote {len(list(OUT.glob('*.gz')))} files, {total / 1e6:.2f} MB to {OUT}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        source = Path(sys.argv[1])
    else:
        sys.path.insert(0, str(HERE.parent.parent))
        from distillguard.paths import shared_data_dir

        source = shared_data_dir()
        if source is None:
            sys.exit("shared/data not found; pass its path as the first argument")
    main(Path(source))
