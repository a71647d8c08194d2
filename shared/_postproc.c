/* Row statistics of a (rows, V) float32 logit matrix in two passes over each row, for soft labels and scores.
 *
 * Per row x (V logits) it gives:
 *   - the top-K logits and their ids, largest first (equal logits: lower id first);
 *   - m, the row's largest logit;
 *   - for each inverse temperature a: s = sum_v exp(a (x_v - m)) and tail = the same sum over the ids outside
 *     the top-K (positive terms only, so a tiny tail keeps its precision);
 *   - d = sum_v exp(x_v - m) (x_v - m), from which the entropy at temperature 1 is log s - d / s.
 * Terms with a (x_v - m) < -87 (under float32's smallest normal relative to the largest term) count as 0.
 *
 * Pass 1 finds the top-K through maxima of blocks of 16 logits (see top_k); pass 2 (one per temperature)
 * computes the exponentials with a polynomial the compiler vectorises, summing into 16 lanes.
 *
 * Rows are split over OpenMP threads, the GIL released. Built with -fopenmp and imported after torch, the
 * extension's libgomp.so.1 is the one torch loaded: one thread team, sized by torch.set_num_threads, and no
 * second runtime spinning against torch's. Built as an optional extension (setup.py): without it the same
 * figures come from the torch path in shared/labels.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LANES 16
#define EXP_FLOOR (-87.0f)
#define MAX_GROUPS 256
#define RANK_MAX 1024
#define MIN_PARALLEL_ROWS 64 /* fewer rows are not worth waking the other threads */

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define CLONES
#endif
/* Inlined into each clone, so every helper is compiled for the clone's instruction set. */
#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* exp(y) for y <= 0 (0 below EXP_FLOOR): y = n ln2 + r, |r| <= ln2 / 2, exp(r) by its Taylor series to r^7
 * (relative error under 1e-8 there), 2^n by the exponent bits. */
INLINE float exp_nonpositive(float y) {
    const float below = y < EXP_FLOOR ? 0.0f : 1.0f;
    y = y < EXP_FLOOR ? EXP_FLOOR : y;
    const float n = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    const float r = (y - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale * below;
}

/* (a, ia) comes before (b, ib) in the top-K order: larger logit first, then lower id. */
INLINE int before(float a, int32_t ia, float b, int32_t ib) { return a > b || (a == b && ia < ib); }

INLINE void swap_at(float *val, int32_t *idx, int64_t a, int64_t b) {
    const float v = val[a];
    const int32_t i = idx[a];
    val[a] = val[b];
    idx[a] = idx[b];
    val[b] = v;
    idx[b] = i;
}

/* Reorders the n pairs so that the first k (1 <= k <= n) are the k first in the top-K order (in any order):
 * quickselect with a median-of-three pivot. The order is total (ids differ), so the k chosen are unique. */
static void select_first(float *val, int32_t *idx, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (before(val[mid], idx[mid], val[lo], idx[lo]))
            swap_at(val, idx, mid, lo);
        if (before(val[hi], idx[hi], val[lo], idx[lo]))
            swap_at(val, idx, hi, lo);
        if (before(val[mid], idx[mid], val[hi], idx[hi]))
            swap_at(val, idx, mid, hi);
        const float pv = val[hi]; /* the median of the three */
        const int32_t pi = idx[hi];
        int64_t store = lo;
        for (int64_t i = lo; i < hi; i++)
            if (before(val[i], idx[i], pv, pi))
                swap_at(val, idx, i, store++);
        swap_at(val, idx, store, hi);
        if (store == k - 1)
            return;
        if (store < k - 1)
            lo = store + 1;
        else
            hi = store - 1;
    }
}

/* Sorts n pairs into the top-K order (insertion sort: n is at most K here). */
static void sort_pairs(float *val, int32_t *idx, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        const float v = val[i];
        const int32_t id = idx[i];
        int64_t p = i;
        while (p > 0 && before(v, id, val[p - 1], idx[p - 1])) {
            val[p] = val[p - 1];
            idx[p] = idx[p - 1];
            p--;
        }
        val[p] = v;
        idx[p] = id;
    }
}

/* gm[g] = the largest of v[g], v[g + k], v[g + 2k], ... (n >= k). */
INLINE void group_maxima(const float *v, int64_t n, int64_t k, float *gm) {
    for (int64_t g = 0; g < k; g++)
        gm[g] = v[g];
    int64_t i0 = k;
    for (; i0 + k <= n; i0 += k)
        for (int64_t g = 0; g < k; g++)
            gm[g] = v[i0 + g] > gm[g] ? v[i0 + g] : gm[g];
    for (int64_t g = 0; i0 + g < n; g++)
        gm[g] = v[i0 + g] > gm[g] ? v[i0 + g] : gm[g];
}

/* Drops candidates under a higher floor while there are more than 2K: the maxima of K groups of them (candidate i
 * in group i % K) are K distinct logits, so their minimum is again a floor under the top-K. Returns the count
 * (more than 2K only when K > MAX_GROUPS or on ties). */
static int64_t tighten(float *val, int32_t *idx, int64_t c, int64_t k) {
    float gm[MAX_GROUPS];
    while (c > 2 * k && k <= MAX_GROUPS) {
        group_maxima(val, c, k, gm);
        float floor = gm[0];
        for (int64_t g = 1; g < k; g++)
            floor = gm[g] < floor ? gm[g] : floor;
        int64_t n = 0;
        for (int64_t i = 0; i < c; i++) {
            val[n] = val[i];
            idx[n] = idx[i];
            n += val[i] >= floor;
        }
        if (n == c)
            break;
        c = n;
    }
    return c;
}

/* The first min(k, c) of c pairs in the top-K order, sorted, into out_val/out_idx; returns how many. Up to
 * RANK_MAX pairs, each pair's rank is counted (c^2 branch-free comparisons, vectorised), which places it
 * directly; beyond, quickselect and insertion sort. */
static int64_t first_sorted(float *val, int32_t *idx, int64_t c, int64_t k, float *out_val, int64_t *out_idx) {
    const int64_t n = c < k ? c : k;
    if (c <= RANK_MAX) {
        for (int64_t i = 0; i < c; i++) {
            const float v = val[i];
            const int32_t id = idx[i];
            int32_t r = 0;
            for (int64_t j = 0; j < c; j++)
                r += (val[j] > v) | ((val[j] == v) & (idx[j] < id));
            if (r < n) {
                out_val[r] = v;
                out_idx[r] = id;
            }
        }
        return n;
    }
    select_first(val, idx, c, n);
    sort_pairs(val, idx, n);
    for (int64_t j = 0; j < n; j++) {
        out_val[j] = val[j];
        out_idx[j] = idx[j];
    }
    return n;
}

/* Scratch of one thread for rows of V logits. */
typedef struct {
    float *block_val, *cand_val;
    int32_t *block_idx, *cand_idx;
} Scratch;

/* The row read as LANES strided blocks: block b holds x[b], x[b + nb], ..., x[b + (LANES - 1) nb] (nb = V / LANES;
 * the last V % LANES logits stand alone). The maxima of all blocks come from LANES vectorised passes. At least
 * K logits are >= the K-th largest block maximum (the maxima of the K largest blocks), so the top-K logits
 * are all >= it and lie in the blocks whose maximum reaches it (K blocks, more only on ties): only those
 * blocks' logits that reach it are gathered (about 2K on a typical row), and the top-K selected among them. */
INLINE void top_k(const float *x, int64_t V, int64_t k, float *val, int64_t *idx, Scratch *w) {
    const int64_t nb = V / LANES;
    float *bm = w->block_val;
    for (int64_t b = 0; b < nb; b++)
        bm[b] = x[b] == x[b] ? x[b] : -INFINITY; /* NaN never counts */
    for (int64_t j = 1; j < LANES; j++) {
        const float *xj = x + j * nb;
        for (int64_t b = 0; b < nb; b++)
            bm[b] = xj[b] > bm[b] ? xj[b] : bm[b];
    }
    float floor = -INFINITY; /* the K-th largest block maximum (val/idx as scratch) */
    if (nb >= k) {
        for (int64_t b = 0; b < nb; b++) {
            w->cand_val[b] = bm[b];
            w->block_idx[b] = (int32_t)b;
        }
        const int64_t c = tighten(w->cand_val, w->block_idx, nb, k);
        floor = val[first_sorted(w->cand_val, w->block_idx, c, k, val, idx) - 1];
    }
    int64_t c = 0;
    for (int64_t b = 0; b < nb; b++) {
        if (!(bm[b] >= floor))
            continue;
        for (int64_t j = 0; j < LANES; j++) {
            const float v = x[b + j * nb];
            w->cand_val[c] = v;
            w->cand_idx[c] = (int32_t)(b + j * nb);
            c += v >= floor; /* NaN never enters */
        }
    }
    for (int64_t i = nb * LANES; i < V; i++) {
        w->cand_val[c] = x[i];
        w->cand_idx[c] = (int32_t)i;
        c += x[i] >= floor;
    }
    c = tighten(w->cand_val, w->cand_idx, c, k);
    for (int64_t j = first_sorted(w->cand_val, w->cand_idx, c, k, val, idx); j < k; j++) {
        val[j] = NAN; /* fewer than k only on a row of NaNs */
        idx[j] = 0;
    }
}

/* Pass 2 at inverse temperature a: s, tail (outside the top-K: logits below the K-th value, plus the ties
 * with it that the top-K left out) and, when want_d, d. */
INLINE void exp_sums(const float *x, int64_t V, float m, float a, float kth, int64_t kept_ties, int want_d,
                     double *s_out, double *tail_out, double *d_out) {
    float s[LANES] = {0}, tail[LANES] = {0}, d[LANES] = {0};
    int32_t ties[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= V; i += LANES) {
        for (int j = 0; j < LANES; j++) {
            const float y = x[i + j] - m;
            const float e = exp_nonpositive(a * y);
            s[j] += e;
            tail[j] += x[i + j] < kth ? e : 0.0f;
            ties[j] += x[i + j] == kth;
            d[j] += e * y;
        }
    }
    double S = 0, T = 0, D = 0;
    int64_t n_ties = 0;
    for (; i < V; i++) {
        const float y = x[i] - m;
        const float e = exp_nonpositive(a * y);
        S += e;
        T += x[i] < kth ? e : 0.0f;
        n_ties += x[i] == kth;
        D += e * y;
    }
    for (int j = 0; j < LANES; j++) {
        S += s[j];
        T += tail[j];
        D += d[j];
        n_ties += ties[j];
    }
    if (n_ties > kept_ties)
        T += (double)(n_ties - kept_ties) * exp_nonpositive(a * (kth - m));
    *s_out = S;
    *tail_out = T;
    if (want_d)
        *d_out = D;
}

CLONES
static void rows(const float *x, int64_t n_rows, int64_t V, int64_t k, const double *inv_t, int64_t n_t,
                 float *top_val, int64_t *top_idx, float *max_out, double *s_out, double *tail_out,
                 double *d_out, Scratch *w) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * V;
        float *val = top_val + r * k;
        int64_t *idx = top_idx + r * k;
        top_k(row, V, k, val, idx, w);
        const float m = val[0];
        const float kth = val[k - 1];
        int64_t kept_ties = 0;
        for (int64_t j = 0; j < k; j++)
            kept_ties += val[j] == kth;
        max_out[r] = m;
        for (int64_t t = 0; t < n_t; t++)
            exp_sums(row, V, m, (float)inv_t[t], kth, kept_ties, inv_t[t] == 1.0, &s_out[r * n_t + t],
                     &tail_out[r * n_t + t], &d_out[r]);
    }
}

/* Rows split over the OpenMP threads in contiguous ranges, each thread with its own scratch; returns 0, or -1
 * when a scratch allocation failed. */
static int all_rows(const float *x, int64_t n_rows, int64_t V, int64_t k, const double *inv_t, int64_t n_t,
                    float *top_val, int64_t *top_idx, float *max_out, double *s_out, double *tail_out,
                    double *d_out) {
    int failed = 0;
#pragma omp parallel if (n_rows >= MIN_PARALLEL_ROWS) reduction(| : failed)
    {
        int64_t lo = 0, hi = n_rows;
#ifdef _OPENMP
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        lo = n_rows * id / nt;
        hi = n_rows * (id + 1) / nt;
#endif
        Scratch w = {malloc(sizeof(float) * (size_t)(V / LANES + 1)), malloc(sizeof(float) * (size_t)(V + 1)),
                     malloc(sizeof(int32_t) * (size_t)(V / LANES + 1)), malloc(sizeof(int32_t) * (size_t)(V + 1))};
        if (w.block_val == NULL || w.cand_val == NULL || w.block_idx == NULL || w.cand_idx == NULL)
            failed = 1;
        else if (hi > lo)
            rows(x + lo * V, hi - lo, V, k, inv_t, n_t, top_val + lo * k, top_idx + lo * k, max_out + lo,
                 s_out + lo * n_t, tail_out + lo * n_t, d_out + lo, &w);
        free(w.block_val);
        free(w.cand_val);
        free(w.block_idx);
        free(w.cand_idx);
    }
    return failed ? -1 : 0;
}

static PyObject *row_stats(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t x, n_rows, V, k, inv_t, n_t, top_val, top_idx, max_out, s_out, tail_out, d_out;
    if (!PyArg_ParseTuple(args, "nnnnnnnnnnnn", &x, &n_rows, &V, &k, &inv_t, &n_t, &top_val, &top_idx,
                          &max_out, &s_out, &tail_out, &d_out))
        return NULL;
    if (n_rows < 0 || V < 1 || V > INT32_MAX - 1 || k < 1 || k > V || n_t < 1) {
        PyErr_SetString(PyExc_ValueError, "row_stats: need rows >= 0, 1 <= k <= V < 2^31 and a temperature");
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = all_rows((const float *)x, n_rows, V, k, (const double *)inv_t, n_t, (float *)top_val,
                  (int64_t *)top_idx, (float *)max_out, (double *)s_out, (double *)tail_out, (double *)d_out);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"row_stats", row_stats, METH_VARARGS,
     "row_stats(x, rows, V, k, inv_t, n_t, top_val, top_idx, max, s, tail, d): addresses of C-contiguous "
     "buffers (float32 x[rows, V]; float64 inv_t[n_t]; float32 top_val[rows, k]; int64 top_idx[rows, k]; "
     "float32 max[rows]; float64 s[rows, n_t], tail[rows, n_t], d[rows]) and sizes; fills the outputs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_postproc", NULL, -1, methods};

PyMODINIT_FUNC PyInit__postproc(void) { return PyModule_Create(&module); }
