#!/usr/bin/env python3
"""Generate a synthetic registry export of FICTIONAL people, for benchmarks and load tests.

Names are built from invented syllables (with a matching Urdu spelling, so records have
realistic byte sizes in both scripts); CNICs are a bijection of the record number, so N
records are unique without keeping a set in memory. The same ``--seed`` always gives the
same file, and ``--changes K`` gives the *next* version of that file: K/2 records renamed,
K/4 removed, K/4 new -- exactly K delta operations -- for delta benchmarks.

    python scripts/gen_registry.py 1000000 /var/tmp/reg-v1.csv
    python scripts/gen_registry.py 1000000 /var/tmp/reg-v2.csv --changes 10000
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

# Invented syllables and an Urdu spelling of each; the words they form are not names
# anyone is known by (a fictional registry must not look like it names real people).
_SYLLABLES = [("ka", "کا"), ("ri", "ری"), ("mo", "مو"), ("zan", "زن"), ("sa", "سا"),
              ("lim", "لم"), ("na", "نا"), ("dir", "در"), ("fa", "فا"), ("roo", "رو"),
              ("ta", "تا"), ("hir", "ہر"), ("ba", "با"), ("shi", "شی"), ("ra", "را"),
              ("ye", "یے"), ("ha", "ہا"), ("mid", "مد"), ("ga", "گا"), ("vel", "ول"),
              ("qu", "قو"), ("dan", "دان"), ("po", "پو"), ("tel", "تل")]
_FIELDS = ["cnic", "name_ur", "name_en", "parent_ur", "parent_en", "relation", "status",
           "recorded_on", "updated_on"]
_MULTIPLIER = 7_919_000_003  # odd and not a multiple of 5: a bijection modulo 10**11


def _word(rng: random.Random) -> tuple[str, str]:
    parts = [rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))]
    return "".join(p[0] for p in parts).capitalize(), "".join(p[1] for p in parts)


def _name(rng: random.Random) -> tuple[str, str]:
    (en1, ur1), (en2, ur2) = _word(rng), _word(rng)
    return f"{en1} {en2}", f"{ur1} {ur2}"


def cnic_for(index: int, seed: int) -> str:
    """A unique 13-digit CNIC for record ``index`` (province digit 1-7)."""
    middle = (index * _MULTIPLIER + seed * 104_729) % 10 ** 11
    province = 1 + index % 7
    return f"{province}{middle:011d}{index % 10}"


def record(index: int, seed: int, variant: int = 0) -> dict[str, str]:
    """Record ``index``; ``variant`` > 0 gives the same person with changed names."""
    rng = random.Random(f"{seed}:{index}:{variant}")
    relation = ("s/o", "d/o", "w/o")[rng.randrange(3)]
    name_en, name_ur = _name(rng)
    parent_en, parent_ur = _name(rng)
    year = rng.randrange(2005, 2026)
    return {
        "cnic": cnic_for(index, seed), "name_ur": name_ur, "name_en": name_en,
        "parent_ur": parent_ur, "parent_en": parent_en, "relation": relation,
        "status": "active", "recorded_on": f"{year}-{rng.randrange(1, 13):02d}-"
                                           f"{rng.randrange(1, 29):02d}",
        "updated_on": "" if rng.random() < 0.7 else f"{min(year + 1, 2026)}-01-15",
    }


def generate(n: int, seed: int = 1, changes: int = 0) -> Iterator[dict[str, str]]:
    """N records, or the next version with ``changes`` delta operations applied."""
    renamed = changes // 2
    removed = changes // 4
    added = changes - renamed - removed
    pick = random.Random(seed * 31 + changes)
    touched = pick.sample(range(n), renamed + removed) if changes else []
    rename_set = set(touched[:renamed])
    remove_set = set(touched[renamed:])
    for i in range(n):
        if i in remove_set:
            continue
        yield record(i, seed, variant=1 if i in rename_set else 0)
    for i in range(n, n + added):
        yield record(i, seed)


def write(path: Path, rows: Iterator[dict[str, str]]) -> int:
    count = 0
    ndjson = path.suffix in (".ndjson", ".jsonl")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if ndjson:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        else:
            fh.write("# SYNTHETIC registry: every person is fictional (scripts/gen_registry.py)\n")
            writer = csv.DictWriter(fh, fieldnames=_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=int, help="number of records in the base version")
    ap.add_argument("out", type=Path, help="output file: .csv, or .ndjson/.jsonl")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--changes", type=int, default=0,
                    help="write the next version: this many upserts+removals")
    args = ap.parse_args(argv)
    count = write(args.out, generate(args.records, args.seed, args.changes))
    print(f"wrote {count} fictional records to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
