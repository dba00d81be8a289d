"""An allocation-heavy Python workload with a deterministic output: dicts, lists, strings,
tuples, sets, objects, JSON round trips, sorting and regular expressions. Prints digests
of what it built, so two runs agree exactly when every allocation behaved.

usage: python3 alloc_heavy.py [SCALE]   (default 1; the preload test uses 1)
"""
import hashlib
import json
import random
import re
import sys


class Point:
    __slots__ = ("x", "y", "tag")

    def __init__(self, x, y, tag):
        self.x, self.y, self.tag = x, y, tag


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    rng = random.Random(20240611)
    digest = hashlib.sha256()

    for round_ in range(scale):
        # Many small objects of many sizes, dropped and rebuilt every round.
        records = [
            {"id": i, "name": f"series-{i % 977}", "tags": [rng.randrange(100) for _ in range(i % 7)],
             "value": rng.random()}
            for i in range(60000)
        ]
        text = json.dumps(records, sort_keys=True)
        back = json.loads(text)
        assert back == records
        digest.update(text.encode())

        words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(1 + i % 23)) for i in range(80000)]
        words.sort()
        counts = {}
        for w in words:
            counts[w[:3]] = counts.get(w[:3], 0) + 1
        digest.update(repr(sorted(counts.items())).encode())

        points = [Point(rng.random(), rng.random(), str(i)) for i in range(50000)]
        points.sort(key=lambda p: (round(p.x, 3), p.tag))
        digest.update(",".join(p.tag for p in points[:1000]).encode())

        s = set(range(0, 200000, 3)) ^ set(range(0, 200000, 5))
        digest.update(str(len(s)).encode())
        chunks = re.findall(r"[a-f]+", " ".join(words[:20000]))
        digest.update(str(len(chunks)).encode())
        big = [bytes(rng.randrange(256) for _ in range(1 + i % 2000)) for i in range(2000)]
        digest.update(b"".join(big[::7]))
        print(f"round {round_}: {len(records)} records, {len(counts)} prefixes, {len(s)} set items")

    print("digest", digest.hexdigest())


if __name__ == "__main__":
    main()
