"""A straightforward pure-Python implementation of the IIRG neighbour-building algorithm.

It is the yardstick for the Cypher build: tests check that the graph's NEXT and COLLAB edges equal
what this computes, edge for edge, on real data, and bench/ times both side by side. It is written
for clarity (plain loops over sequences, dicts and sorting), the way the IIRG reference code reads,
not for speed.
"""

from __future__ import annotations

from collections import Counter


def transitions(sequences: list[list[str]]) -> Counter:
    """(a, b) -> how often b directly follows a; an item followed by itself is no transition."""
    counts: Counter = Counter()
    for seq in sequences:
        for a, b in zip(seq, seq[1:]):
            if a != b:
                counts[(a, b)] += 1
    return counts


def cooccurrence(sequences: list[list[str]], window: int) -> dict[tuple[str, str], list[int]]:
    """(i, j) -> [count, smallest distance] over position pairs at distance 1..window, both ways."""
    pairs: dict[tuple[str, str], list[int]] = {}
    for seq in sequences:
        n = len(seq)
        for p in range(n):
            for q in range(max(0, p - window), min(n, p + window + 1)):
                if q == p or seq[p] == seq[q]:
                    continue
                entry = pairs.setdefault((seq[p], seq[q]), [0, window + 1])
                entry[0] += 1
                entry[1] = min(entry[1], abs(p - q))
    return pairs


def collaborative_neighbours(sequences: list[list[str]], item_order: list[str], window: int, k: int,
                             similar: dict[str, list[str]] | None = None) -> dict[str, list[dict]]:
    """Top-k collaborative neighbours per item, back-filled from semantic neighbours.

    Ranking: co-occurrence count (desc), then the neighbour's training popularity (desc), then the
    neighbour's position in the item list (asc). Items with fewer than k neighbours take, in order,
    the top co-occurrence neighbours of their semantic neighbours (`similar`, ranked lists).
    """
    popularity = Counter(item for seq in sequences for item in seq)
    position = {item: i for i, item in enumerate(item_order)}
    by_item: dict[str, list[tuple[str, int, int]]] = {}
    for (i, j), (count, hop) in cooccurrence(sequences, window).items():
        by_item.setdefault(i, []).append((j, count, hop))

    top: dict[str, list[dict]] = {}
    for i, candidates in by_item.items():
        candidates.sort(key=lambda c: (-c[1], -popularity[c[0]], position[c[0]]))
        top[i] = [{"neighbor_id": j, "count": count, "hop": hop, "source": "cooccur", "via_item_id": None}
                  for j, count, hop in candidates[:k]]

    result = {i: list(ns) for i, ns in top.items()}
    if similar:
        for i in item_order:
            chosen = result.setdefault(i, [])
            if len(chosen) >= k:
                continue
            present = {n["neighbor_id"] for n in chosen}
            for m in similar.get(i, []):
                for neighbour in top.get(m, []):
                    j = neighbour["neighbor_id"]
                    if len(chosen) >= k:
                        break
                    if j == i or j in present:
                        continue
                    chosen.append({"neighbor_id": j, "count": 0, "hop": None,
                                   "source": "semantic_backfill", "via_item_id": m})
                    present.add(j)
            if not chosen:
                del result[i]
    for neighbours in result.values():
        for rank, n in enumerate(neighbours, start=1):
            n["rank"] = rank
    return result
