"""Readable twin of kai._fast.nodearrays."""


def charge(idle, releasing, avail, i, req, sign, is_releasing):
    for c, r in enumerate(req):
        if r == 0:
            continue
        idle[c][i] -= sign * r
        if is_releasing:
            releasing[c][i] += sign * r
        avail[c][i] = idle[c][i] + releasing[c][i]


def charge_rows(idle, releasing, avail, idx, table, rid, rel, sign):
    for p, i in enumerate(idx):
        if i >= 0:
            charge(idle, releasing, avail, i, table[rid[p]], sign, rel[p])
