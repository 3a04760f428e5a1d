#!/usr/bin/env python3
"""Throughput against connections, from benches/sweep.sh's TSV, as a self-contained SVG.

    python3 benches/plot.py target/sweep.tsv docs/throughput.svg

No plotting library: the SVG is written by hand (lines, points, axes, legend).
"""
import sys

SERIES = [
    ("redis_lpush", "Redis LPUSH (ceiling)", "#888888"),
    ("redis_aof_always", "Redis LPUSH, fsync always", "#bbbbbb"),
    ("none_push", "werk push, --sync none", "#1f77b4"),
    ("always_push", "werk push, --sync always", "#d62728"),
    ("none_process", "werk process, --sync none", "#2ca02c"),
    ("always_process", "werk process, --sync always", "#ff7f0e"),
]


def main(src, dst):
    rows = [line.rstrip("\n").split("\t") for line in open(src)]
    head, rows = rows[0], rows[1:]
    data = [{k: int(v) for k, v in zip(head, r)} for r in rows]
    conns = [d["conns"] for d in data]
    top = max(max(d[k] for k, _, _ in SERIES) for d in data) or 1
    top = ((top // 10000) + 1) * 10000
    w, h, left, right, up, down = 720, 430, 70, 220, 30, 50
    pw, ph = w - left - right, h - up - down

    def x(i):
        return left + (pw * i / max(1, len(conns) - 1))

    def y(v):
        return up + ph - ph * v / top

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for t in range(0, top + 1, top // 5):
        out.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + pw}" y2="{y(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t // 1000}k</text>')
    for i, c in enumerate(conns):
        out.append(f'<text x="{x(i):.1f}" y="{up + ph + 18}" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 10}" text-anchor="middle">connections</text>')
    out.append(f'<text x="14" y="{up + ph / 2}" transform="rotate(-90 14 {up + ph / 2})" '
               f'text-anchor="middle">jobs (or LPUSH ops) per second</text>')
    out.append(f'<line x1="{left}" y1="{up + ph}" x2="{left + pw}" y2="{up + ph}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{up}" x2="{left}" y2="{up + ph}" stroke="black"/>')
    for n, (key, label, color) in enumerate(SERIES):
        pts = " ".join(f"{x(i):.1f},{y(d[key]):.1f}" for i, d in enumerate(data))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, d in enumerate(data):
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(d[key]):.1f}" r="3" fill="{color}"/>')
        ly = up + 10 + n * 20
        out.append(f'<line x1="{w - right + 15}" y1="{ly}" x2="{w - right + 35}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{w - right + 40}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py SWEEP.tsv OUT.svg")
    main(sys.argv[1], sys.argv[2])
