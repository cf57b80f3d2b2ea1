"""The per-session walk of :mod:`leadscore.video.reconstruct`, compiled (numba), for the DuckDB store.

The SQL reconstruction spends most of its time in a window sort over every event and in a sweep over
cell boundaries (bench/RESULTS.md, "Video"). Here DuckDB hands the events over unsorted as typed
columns (leadscore.video.fast); a two-pass radix sort groups them by viewer: part_scatter writes each
row to one of 256 partitions by the top bits of the viewer's 64-bit hash (few output streams, so the
copy runs at memory speed, two threads over disjoint partition ranges), then walk copies each
partition (in cache) into small buckets by the next bits, sorts each bucket by (viewer, session,
time, position) and makes one pass per viewer that does what the CTEs ``lsv_grp`` … ``lsv_iv``,
``lsv_cells`` … ``lsv_runs`` and ``lsv_ivagg`` / ``lsv_hagg`` do, with the same arithmetic in the same
order, so the results are identical (tests/video/test_kernel.py checks it against the SQL).

Written by hand because no library does it: the walk is a state machine over each session's events
(the player's state, the next event's time and position, clamping, the credit checks) followed by a
per-viewer sweep; vectorised numpy would need the same global sorts and windows that make the SQL
slow. numba compiles it (``cache=True``: compiled once per machine, ~40 s, then loaded from
``__pycache__``).

Event codes (part_scatter): ``code = erank + 16 * pos_ok + 32 * (video code + 1)`` where erank is
the tie-break rank of reconstruct.VIDEO_EVENTS, pos_ok says the event has a position (and a
seek_position for Seek Started), and the video code is the rank of the event's own video id among the
sorted distinct ids (-1: none), so MAX over codes is MAX over ids as the SQL takes it.
``ok`` = epoch µs × 32 + erank (reconstruct's ord_key).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# per erank: the state the event leaves the player in (1 playing, 0 not, -1 keep) and start events
_RANKS = 16


def state_table(video_events: dict) -> tuple[np.ndarray, np.ndarray]:
    st = np.full(_RANKS, -1, np.int8)
    start = np.zeros(_RANKS, np.bool_)
    for name, (rank, state) in video_events.items():
        if state is not None:
            st[rank] = state
        if name in ("Video Playback Started", "Video Content Started"):
            start[rank] = True
    return st, start


PART_BITS = 8   # 256 partitions: few enough output streams for the scatter to write at memory speed


@njit(cache=True, nogil=True)
def _lookup(keys, values, k):
    """values[i] where keys[i] == k (keys sorted), else -1."""
    i = np.searchsorted(keys, k)
    if i < keys.shape[0] and keys[i] == k:
        return values[i]
    return -1


@njit(cache=True, nogil=True)
def part_count(lh, counts):
    """Add the rows of one chunk to the per-partition counts (counts[p + 1]; the partition is the top
    PART_BITS bits of the viewer hash)."""
    shift = np.uint64(64 - PART_BITS)
    for i in range(lh.shape[0]):
        counts[np.int64(lh[i] >> shift) + 1] += 1


@njit(cache=True, nogil=True)
def part_scatter(lh, lh2, sh, t, eh, vh, flags, pos, tot, rate, ev_h, ev_r, v_h, v_c, seek_rank, base, fill,
                 p_lo, p_hi, o_lh, o_lh2, o_sh, o_ok, o_code, o_pos, o_tot, o_rate, o_row):
    """Write the video events of one chunk (input rows base, base + 1, ...) that fall in partitions
    [p_lo, p_hi) to their partitions: the first pass of a two-pass radix sort (walk does the second
    inside each partition, in cache). Threads taking disjoint partition ranges write disjoint rows.

    Each row gets its ord_key (``o_ok``) and code (see the module text). ``eh``/``vh``: 64-bit hashes
    of the event name and the video id, looked up in the sorted hashes of the known names (ev_h →
    erank ev_r; an unknown name is not a video event: skipped) and video ids (v_h → code v_c);
    ``flags``: 1 position, 2 seek_position, 4 video id present."""
    shift = np.uint64(64 - PART_BITS)
    for i in range(lh.shape[0]):
        p = np.int64(lh[i] >> shift)
        if p < p_lo or p >= p_hi:
            continue
        er = _lookup(ev_h, ev_r, eh[i])
        if er < 0:
            continue
        f = flags[i]
        pos_ok = (f & 1) != 0 and not (er == seek_rank and (f & 2) == 0)
        v = _lookup(v_h, v_c, vh[i]) if (f & 4) != 0 else -1
        x = fill[p]
        fill[p] = x + 1
        o_lh[x] = lh[i]
        o_lh2[x] = lh2[i]
        o_sh[x] = sh[i]
        o_ok[x] = t[i] * 32 + er
        o_code[x] = er + (16 if pos_ok else 0) + 32 * (v + 1)
        o_pos[x] = pos[i]
        o_tot[x] = tot[i]
        o_rate[x] = rate[i]
        o_row[x] = base + i


@njit(cache=True, nogil=True)
def _less(i, j, lh, lh2, sh, ok, pos):
    if lh[i] != lh[j]:
        return lh[i] < lh[j]
    if lh2[i] != lh2[j]:
        return lh2[i] < lh2[j]
    if sh[i] != sh[j]:
        return sh[i] < sh[j]
    if ok[i] != ok[j]:
        return ok[i] < ok[j]
    # NaN (no position) last, so that the order stays total (the walk skips those rows anyway)
    if np.isnan(pos[j]):
        return not np.isnan(pos[i])
    return pos[i] < pos[j]


@njit(cache=True, nogil=True)
def _sort_range(order, a, b, lh, lh2, sh, ok, pos):
    """Sort order[a:b] by (lh, sh, ok, pos): insertion sort for a small bucket, else stable
    argsorts key by key (least significant first)."""
    m = b - a
    if m <= 64:
        for x in range(a + 1, b):
            v = order[x]
            y = x - 1
            while y >= a and _less(v, order[y], lh, lh2, sh, ok, pos):
                order[y + 1] = order[y]
                y -= 1
            order[y + 1] = v
        return
    idx = order[a:b].copy()
    k = np.argsort(pos[idx], kind="mergesort")
    idx = idx[k]
    k = np.argsort(ok[idx], kind="mergesort")
    idx = idx[k]
    k = np.argsort(sh[idx], kind="mergesort")
    idx = idx[k]
    k = np.argsort(lh2[idx], kind="mergesort")
    idx = idx[k]
    k = np.argsort(lh[idx], kind="mergesort")
    idx = idx[k]
    order[a:b] = idx


@njit(cache=True, nogil=True)
def _grow(a, need):
    if need <= a.shape[0]:
        return a
    out = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    out[:a.shape[0]] = a
    return out


@njit(cache=True, nogil=True)
def _clamp(x, dur):
    # reconstruct._ctes, lsv_seg: CASE WHEN x < 0 THEN 0 WHEN duration IS NOT NULL AND x > duration THEN duration ELSE x
    if x < 0:
        return 0.0
    if not np.isnan(dur) and x > dur:
        return dur
    return x


@njit(cache=True, nogil=True)
def _isort(a, m):
    """Sort a[:m] in place: insertion sort when small (no allocation), else numpy's sort."""
    if m > 32:
        a[:m].sort()
        return
    for x in range(1, m):
        v = a[x]
        y = x - 1
        while y >= 0 and v < a[y]:
            a[y + 1] = a[y]
            y -= 1
        a[y + 1] = v


@njit(cache=True, nogil=True)
def _video_of(c, session_video):
    """An event's video (its code's own, else its session's), or -1 when the event is not accepted
    (flag bit 4) or no video is known."""
    if (c >> 4) & 1 == 0:
        return -1
    v = (c >> 5) - 1
    return session_video if v < 0 else v


@njit(cache=True, nogil=True)
def _viewer(order, va, vb, sh, ok, code, pos, tot, rate, row, cat_dur, st_of, start_of, seek_rank, gap_limit, tol,
            max_rate, slot_of, q_a, q_b, q_start, q_rate, q_svid, s_vid, s_len, s_dur, s_nsess, s_lastsess, s_first,
            s_last, s_far, s_ivlast, s_has_iv, c_slot, c_lo, c_hi, vids_here, los, his,
            nf, f_row, f_vid, f_dur, f_uniq, f_watch, f_repl, f_far, f_sess, f_first, f_last,
            nr, r_fact, r_lo, r_hi, r_plays):
    """One viewer: rows order[va:vb], sorted by (session, time, position). The scratch arrays hold at
    least vb - va entries, the outputs at least nf + vb - va facts and nr + 2 (vb - va) runs.
    Returns the new (nf, nr)."""
    # the sessions (lsv_grp / lsv_gs): started?, fastest valid rate, the session's video
    nq = 0
    x = va
    while x < vb:
        y = x + 1
        while y < vb and sh[order[y]] == sh[order[x]]:
            y += 1
        has_start = False
        mr = np.nan
        sv = -1
        for z in range(x, y):
            i = order[z]
            c = code[i]
            if start_of[c & 15]:
                has_start = True
            r = rate[i]
            if r > 0 and r <= max_rate and (np.isnan(mr) or r > mr):
                mr = r
            v = (c >> 5) - 1
            if v > sv:
                sv = v
        q_a[nq] = x
        q_b[nq] = y
        q_start[nq] = has_start
        q_rate[nq] = 1.0 if np.isnan(mr) else mr
        q_svid[nq] = sv
        nq += 1
        x = y
    # pass 1 (lsv_dur): per video, the accepted events of started sessions
    ns = 0
    for q in range(nq):
        if not q_start[q]:
            continue
        for z in range(q_a[q], q_b[q]):
            i = order[z]
            c = code[i]
            v = _video_of(c, q_svid[q])
            if v < 0:
                continue
            t = ok[i] >> 5
            s = slot_of[v]
            if s < 0:
                s = ns
                ns += 1
                slot_of[v] = s
                s_vid[s] = v
                s_len[s] = np.nan
                s_nsess[s] = 0
                s_lastsess[s] = -1
                s_first[s] = t
                s_last[s] = t
                s_far[s] = 0.0
                s_has_iv[s] = False
                s_ivlast[s] = 0
            if t < s_first[s]:
                s_first[s] = t
            if t > s_last[s]:
                s_last[s] = t
            tl = tot[i]
            if tl > 0 and (np.isnan(s_len[s]) or tl > s_len[s]):
                s_len[s] = tl
            if s_lastsess[s] != q:
                s_lastsess[s] = q
                s_nsess[s] += 1
    for s in range(ns):
        d = cat_dur[s_vid[s]]
        s_dur[s] = s_len[s] if np.isnan(d) else d
    # pass 2 (lsv_state / lsv_seg / lsv_iv): one walk per (session, video), the credited cells
    nc = 0
    for q in range(nq):
        if not q_start[q]:
            continue
        eff_rate = q_rate[q]
        sv = q_svid[q]
        nv = 0
        for z in range(q_a[q], q_b[q]):
            c = code[order[z]]
            v = _video_of(c, sv)
            if v < 0:
                continue
            seen = False
            for w in range(nv):
                if vids_here[w] == v:
                    seen = True
            if not seen:
                vids_here[nv] = v
                nv += 1
        for w in range(nv):
            v = vids_here[w]
            s = slot_of[v]
            dur = s_dur[s]
            state = -1
            prev = -1
            prev_playing = False
            for z in range(q_a[q], q_b[q]):
                j = order[z]
                c = code[j]
                if _video_of(c, sv) != v:   # v >= 0: not accepted (-1) is skipped too
                    continue
                if prev_playing:
                    start = _clamp(pos[prev], dur)
                    np_ = _clamp(pos[j], dur)
                    t0 = ok[prev] >> 5
                    t1 = ok[j] >> 5
                    dt = np.float64(t1 - t0) / 1000000.0
                    end = np_ if np_ > start else start
                    if dt > gap_limit:
                        pass
                    elif np_ < start - tol or np_ > start + eff_rate * dt + tol:
                        pass
                    elif end > start:
                        if not s_has_iv[s] or end > s_far[s]:
                            s_far[s] = end
                        if not s_has_iv[s] or t1 > s_ivlast[s]:
                            s_ivlast[s] = t1
                        s_has_iv[s] = True
                        lo = np.int64(np.ceil(start - 0.5))
                        hi = np.int64(np.ceil(end - 0.5))
                        if hi > lo:
                            c_slot[nc] = s
                            c_lo[nc] = lo
                            c_hi[nc] = hi
                            nc += 1
                er = c & 15
                st = st_of[er]
                if st >= 0:
                    state = st
                prev = j
                prev_playing = state == 1 and er != seek_rank
    # per video: the sweep over cell boundaries (lsv_pts / lsv_runs) and the facts (lsv_hagg / lsv_facts)
    for s in range(ns):
        m = 0
        for e in range(nc):
            if c_slot[e] == s:
                los[m] = c_lo[e]
                his[m] = c_hi[e]
                m += 1
        _isort(los, m)
        _isort(his, m)
        uniq = 0
        watch = 0
        repl = 0
        x = 0
        y = 0
        level = 0
        prev_sec = 0
        while x < m or y < m:
            if y >= m or (x < m and los[x] <= his[y]):
                sec = los[x]
            else:
                sec = his[y]
            d = 0
            while x < m and los[x] == sec:
                d += 1
                x += 1
            while y < m and his[y] == sec:
                d -= 1
                y += 1
            if d == 0:
                continue
            if level > 0:
                r_fact[nr] = nf
                r_lo[nr] = prev_sec
                r_hi[nr] = sec
                r_plays[nr] = level
                nr += 1
                ln = sec - prev_sec
                uniq += ln
                watch += ln * level
                if level >= 2:
                    repl += ln
            level += d
            prev_sec = sec
        f_row[nf] = row[order[va]]
        f_vid[nf] = s_vid[s]
        f_dur[nf] = s_dur[s]
        f_uniq[nf] = uniq
        f_watch[nf] = watch
        f_repl[nf] = repl
        f_far[nf] = s_far[s] if s_has_iv[s] else np.nan
        f_sess[nf] = s_nsess[s]
        f_first[nf] = s_first[s]
        f_last[nf] = s_ivlast[s] if s_has_iv[s] else s_last[s]
        nf += 1
    for s in range(ns):
        slot_of[s_vid[s]] = -1
    return nf, nr


@njit(cache=True, nogil=True)
def walk(pstarts, pends, p_lo, p_hi, g_lh, g_lh2, g_sh, g_ok, g_code, g_pos, g_tot, g_rate, g_row, cat_dur, st_of, start_of,
         seek_rank, gap_limit, tol, max_rate):
    """Reconstruct every viewer in partitions [p_lo, p_hi) of part_scatter's output (partition p is
    rows pstarts[p]:pends[p]). Returns the
    viewer × video facts (representative input row, video code, duration, unique / watch / replayed
    seconds, furthest position (NaN: nothing played), sessions, first and last µs) and the heatmap
    runs (fact index, start, end, plays).

    Each partition is copied into small buckets by the next bits of the viewer hash (a counting
    sort, in cache), each bucket sorted by (viewer, session, time, position), then walked viewer by
    viewer."""
    pm = 1
    for p in range(p_lo, p_hi):
        pm = max(pm, pends[p] - pstarts[p])
    # the partition, bucketed
    lh = np.empty(pm, np.uint64)
    lh2 = np.empty(pm, np.uint64)
    sh = np.empty(pm, np.uint64)
    ok = np.empty(pm, np.int64)
    code = np.empty(pm, np.int32)
    pos = np.empty(pm, np.float64)
    tot = np.empty(pm, np.float64)
    rate = np.empty(pm, np.float64)
    row = np.empty(pm, np.int64)
    order = np.empty(pm, np.int64)
    bbits = 1
    while bbits < 20 and (pm >> (bbits + 3)) > 0:
        bbits += 1
    nb = 1 << bbits
    starts = np.zeros(nb + 1, np.int64)
    fill = np.empty(nb, np.int64)
    bshift = np.uint64(64 - bbits)
    pshift = np.uint64(PART_BITS)
    m = 1
    for p in range(p_lo, p_hi):
        # the largest bucket of any partition, for the scratch below
        starts[:] = 0
        for i in range(pstarts[p], pends[p]):
            starts[np.int64((g_lh[i] << pshift) >> bshift) + 1] += 1
        for b in range(nb):
            m = max(m, starts[b + 1])
    # scratch for one viewer (at most one bucket's rows)
    slot_of = np.full(cat_dur.shape[0], -1, np.int64)
    q_a = np.empty(m, np.int64)
    q_b = np.empty(m, np.int64)
    q_start = np.empty(m, np.bool_)
    q_rate = np.empty(m, np.float64)
    q_svid = np.empty(m, np.int64)
    s_vid = np.empty(m, np.int64)
    s_len = np.empty(m, np.float64)
    s_dur = np.empty(m, np.float64)
    s_nsess = np.empty(m, np.int64)
    s_lastsess = np.empty(m, np.int64)
    s_first = np.empty(m, np.int64)
    s_last = np.empty(m, np.int64)
    s_far = np.empty(m, np.float64)
    s_ivlast = np.empty(m, np.int64)
    s_has_iv = np.empty(m, np.bool_)
    c_slot = np.empty(m, np.int64)
    c_lo = np.empty(m, np.int64)
    c_hi = np.empty(m, np.int64)
    vids_here = np.empty(m, np.int64)
    los = np.empty(m, np.int64)
    his = np.empty(m, np.int64)
    n_in = 0
    for p in range(p_lo, p_hi):
        n_in += pends[p] - pstarts[p]
    cap_f = n_in // 6 + 2 * m + 16
    cap_r = n_in // 5 + 4 * m + 16
    f_row = np.empty(cap_f, np.int64)
    f_vid = np.empty(cap_f, np.int32)
    f_dur = np.empty(cap_f, np.float64)
    f_uniq = np.empty(cap_f, np.int64)
    f_watch = np.empty(cap_f, np.int64)
    f_repl = np.empty(cap_f, np.int64)
    f_far = np.empty(cap_f, np.float64)
    f_sess = np.empty(cap_f, np.int64)
    f_first = np.empty(cap_f, np.int64)
    f_last = np.empty(cap_f, np.int64)
    r_fact = np.empty(cap_r, np.int64)
    r_lo = np.empty(cap_r, np.int64)
    r_hi = np.empty(cap_r, np.int64)
    r_plays = np.empty(cap_r, np.int64)
    nf = 0
    nr = 0
    for p in range(p_lo, p_hi):
        g0 = pstarts[p]
        g1 = pends[p]
        if g1 == g0:
            continue
        starts[:] = 0
        for i in range(g0, g1):
            starts[np.int64((g_lh[i] << pshift) >> bshift) + 1] += 1
        for b in range(nb):
            starts[b + 1] += starts[b]
        fill[:] = starts[:-1]
        for i in range(g0, g1):
            b = np.int64((g_lh[i] << pshift) >> bshift)
            x = fill[b]
            fill[b] = x + 1
            lh[x] = g_lh[i]
            lh2[x] = g_lh2[i]
            sh[x] = g_sh[i]
            ok[x] = g_ok[i]
            code[x] = g_code[i]
            pos[x] = g_pos[i]
            tot[x] = g_tot[i]
            rate[x] = g_rate[i]
            row[x] = g_row[i]
            order[x] = x
        if nf + (g1 - g0) > f_row.shape[0]:
            need = nf + (g1 - g0)
            f_row = _grow(f_row, need)
            f_vid = _grow(f_vid, need)
            f_dur = _grow(f_dur, need)
            f_uniq = _grow(f_uniq, need)
            f_watch = _grow(f_watch, need)
            f_repl = _grow(f_repl, need)
            f_far = _grow(f_far, need)
            f_sess = _grow(f_sess, need)
            f_first = _grow(f_first, need)
            f_last = _grow(f_last, need)
        if nr + 2 * (g1 - g0) > r_fact.shape[0]:
            need = nr + 2 * (g1 - g0)
            r_fact = _grow(r_fact, need)
            r_lo = _grow(r_lo, need)
            r_hi = _grow(r_hi, need)
            r_plays = _grow(r_plays, need)
        for bk in range(nb):
            a0 = starts[bk]
            a1 = starts[bk + 1]
            if a1 == a0:
                continue
            _sort_range(order, a0, a1, lh, lh2, sh, ok, pos)
            va = a0
            while va < a1:
                vb = va + 1
                while vb < a1 and lh[order[vb]] == lh[order[va]] and lh2[order[vb]] == lh2[order[va]]:
                    vb += 1
                nf, nr = _viewer(order, va, vb, sh, ok, code, pos, tot, rate, row, cat_dur, st_of, start_of,
                                 seek_rank, gap_limit, tol, max_rate, slot_of, q_a, q_b, q_start, q_rate, q_svid,
                                 s_vid, s_len, s_dur, s_nsess, s_lastsess, s_first, s_last, s_far, s_ivlast, s_has_iv,
                                 c_slot, c_lo, c_hi, vids_here, los, his, nf, f_row, f_vid, f_dur, f_uniq, f_watch,
                                 f_repl, f_far, f_sess, f_first, f_last, nr, r_fact, r_lo, r_hi, r_plays)
                va = vb
    return (f_row[:nf], f_vid[:nf], f_dur[:nf], f_uniq[:nf], f_watch[:nf], f_repl[:nf], f_far[:nf],
            f_sess[:nf], f_first[:nf], f_last[:nf], r_fact[:nr], r_lo[:nr], r_hi[:nr], r_plays[:nr])
