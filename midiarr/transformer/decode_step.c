/* One GPT-2 decoding step (one new token per row) over a preallocated key/value cache.
 *
 * Why C: at batch 1 a token of the 5M stem transformer spent ~0.7 ms in the 24 matrix-vector
 * products and another ~1.3 ms in the dispatch of ~120 small torch operations. Here every
 * stage of a layer runs in one OpenMP region: each thread owns a slice of every weight
 * matrix's output rows (and a slice of the attention heads), so the weights are streamed
 * once per token by both cores and the threads meet only at the barriers a layer needs.
 *
 * Layouts (all float32, contiguous, as the Python side prepares them):
 *   wte (vocab, n) - token embedding, also the tied output head; wpe (positions, n)
 *   qkv_w (3n, n), out_w (n, n), fc_w (4n, n), proj_w (n, 4n): linear weights as (out, in)
 *   keys, values (layers, batch, heads, max_len, head_dim): the torch tensors of the caches
 * The arithmetic follows transformers' GPT-2 (pre-norm blocks, tanh GELU, tied head).
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <stdint.h>
#if defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#endif

typedef struct {
    int n_layer, n_embd, n_head, n_vocab, max_len;
    float eps;
    int half; /* the four linear weights of each layer are IEEE half floats (uint16), not float32 */
    const float *wte, *wpe, *lnf_w, *lnf_b;
    /* per layer: ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b */
    const void *const *layers;
} Model;

/* y[b][o] = bias[o] + W[o,:] . x[b][:] for rows o in [r0, r1); optionally y += instead of
 * y =. Four rows at a time share each load of x. */
static void matvec_rows(const float *W, const float *bias, const float *x, float *y, int in, int out_stride,
                        int x_stride, int batch, int r0, int r1, int accumulate) {
    int o = r0;
    for (; o + 4 <= r1; o += 4) {
        const float *w0 = W + (size_t)o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
        for (int b = 0; b < batch; b++) {
            const float *xb = x + (size_t)b * x_stride;
            float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
            for (int i = 0; i < in; i++) {
                const float xi = xb[i];
                s0 += w0[i] * xi;
                s1 += w1[i] * xi;
                s2 += w2[i] * xi;
                s3 += w3[i] * xi;
            }
            float *yb = y + (size_t)b * out_stride;
            float r[4] = {s0 + bias[o], s1 + bias[o + 1], s2 + bias[o + 2], s3 + bias[o + 3]};
            for (int k = 0; k < 4; k++) yb[o + k] = accumulate ? yb[o + k] + r[k] : r[k];
        }
    }
    for (; o < r1; o++) {
        const float *w = W + (size_t)o * in;
        for (int b = 0; b < batch; b++) {
            const float *xb = x + (size_t)b * x_stride;
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < in; i++) s += w[i] * xb[i];
            float *yb = y + (size_t)b * out_stride;
            yb[o] = accumulate ? yb[o] + s + bias[o] : s + bias[o];
        }
    }
}

/* An IEEE half float's value (the portable path; F16C converts eight at a time below). */
static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        exponent = 113;
        while (!(mantissa & 0x400)) {
            mantissa <<= 1;
            exponent--;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

#if defined(__F16C__) && defined(__FMA__)
static inline float hsum8(__m256 v) {
    __m128 four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    four = _mm_hadd_ps(four, four);
    four = _mm_hadd_ps(four, four);
    return _mm_cvtss_f32(four);
}
#endif

/* matvec_rows with half-float weights: half the bytes to stream per token, which is what a token's
 * matrix-vector products are bound by (19 MB of float32 weights for the 5M model). */
static void matvec_rows_half(const uint16_t *W, const float *bias, const float *x, float *y, int in, int out_stride,
                             int x_stride, int batch, int r0, int r1, int accumulate) {
    int o = r0;
#if defined(__F16C__) && defined(__FMA__)
    if (in % 8 == 0) { /* four rows per pass share each load of x, as in matvec_rows */
        for (; o + 4 <= r1; o += 4) {
            const uint16_t *w0 = W + (size_t)o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
            for (int b = 0; b < batch; b++) {
                const float *xb = x + (size_t)b * x_stride;
                __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
                for (int i = 0; i < in; i += 8) {
                    const __m256 xi = _mm256_loadu_ps(xb + i);
                    s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w0 + i))), xi, s0);
                    s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w1 + i))), xi, s1);
                    s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w2 + i))), xi, s2);
                    s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w3 + i))), xi, s3);
                }
                float *yb = y + (size_t)b * out_stride;
                const float r[4] = {hsum8(s0) + bias[o], hsum8(s1) + bias[o + 1], hsum8(s2) + bias[o + 2],
                                    hsum8(s3) + bias[o + 3]};
                for (int k = 0; k < 4; k++) yb[o + k] = accumulate ? yb[o + k] + r[k] : r[k];
            }
        }
    }
#endif
    for (; o < r1; o++) { /* other widths, other CPUs */
        const uint16_t *w = W + (size_t)o * in;
        for (int b = 0; b < batch; b++) {
            const float *xb = x + (size_t)b * x_stride;
            float s = 0.f;
            for (int i = 0; i < in; i++) s += half_to_float(w[i]) * xb[i];
            float *yb = y + (size_t)b * out_stride;
            yb[o] = accumulate ? yb[o] + s + bias[o] : s + bias[o];
        }
    }
}

/* Rows [r0, r1) of a layer's linear weight, float32 or half (m->half), from row `first` on. */
static void linear_rows(const Model *m, const void *W, size_t first, const float *bias, const float *x, float *y,
                        int in, int out_stride, int x_stride, int batch, int r0, int r1, int accumulate) {
    if (m->half)
        matvec_rows_half((const uint16_t *)W + first * in, bias, x, y, in, out_stride, x_stride, batch, r0, r1,
                         accumulate);
    else
        matvec_rows((const float *)W + first * in, bias, x, y, in, out_stride, x_stride, batch, r0, r1, accumulate);
}

/* Columns [c0, c1) of LayerNorm(x[b]) for every row b; statistics over the whole row. */
static void layer_norm_cols(const float *x, const float *w, const float *b, float *y, int n, int batch, float eps,
                            int c0, int c1) {
    for (int r = 0; r < batch; r++) {
        const float *xr = x + (size_t)r * n;
        float mean = 0.f, var = 0.f;
        for (int i = 0; i < n; i++) mean += xr[i];
        mean /= (float)n;
        for (int i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
        const float inv = 1.f / sqrtf(var / (float)n + eps);
        for (int i = c0; i < c1; i++) y[(size_t)r * n + i] = (xr[i] - mean) * inv * w[i] + b[i];
    }
}

/* exp(x) for x <= 0 or moderate x, written so loops over it vectorize (libm's expf is a call per
 * element): Cody-Waite range reduction and a degree-6 polynomial, ~1 ulp like the common expf. */
static inline float exp_vec(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    const float k = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int bits = ((int)k + 127) << 23; /* 2^k as a float's exponent field */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* GPT-2's GELU (tanh form), with tanh(u) = 1 - 2 / (exp(2u) + 1). */
static inline float gelu_tanh(float v) {
    const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    return 0.5f * v * (2.f - 2.f / (exp_vec(2.f * u) + 1.f));
}

static void gelu_inplace(float *restrict h, int count) {
#pragma omp simd
    for (int i = 0; i < count; i++) h[i] = gelu_tanh(h[i]);
}

/* Feeds ids[batch] at position `start`, writes their keys and values into the caches and the
 * next-token logits into logits[batch][vocab]. Returns 0, -1 when out of memory, -2 for a token
 * id outside the vocabulary or a position outside the cache. */
int midiarr_decode_step(const Model *m, int batch, int start, const long long *ids, float *keys, float *values,
                        float *logits, int threads) {
    const int n = m->n_embd, H = m->n_head, d = n / H, L = m->max_len, end = start + 1;
    if (start < 0 || start >= L || batch < 1 || threads < 1) return -2;
    for (int r = 0; r < batch; r++)
        if (ids[r] < 0 || ids[r] >= m->n_vocab) return -2;
    float *x = malloc(sizeof(float) * (size_t)batch * n);
    float *a = malloc(sizeof(float) * (size_t)batch * n);
    float *q = malloc(sizeof(float) * (size_t)batch * 3 * n); /* q, k, v of each row */
    float *att = malloc(sizeof(float) * (size_t)batch * n);
    float *hid = malloc(sizeof(float) * (size_t)batch * 4 * n);
    float *scores = malloc(sizeof(float) * (size_t)threads * end);
    int status = 0;
    if (!x || !a || !q || !att || !hid || !scores) {
        status = -1;
        goto done;
    }
    const float scale = 1.f / sqrtf((float)d);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int c0 = n * t / T, c1 = n * (t + 1) / T;           /* this thread's columns of a width-n row */
        const int f0 = 4 * n * t / T, f1 = 4 * n * (t + 1) / T;   /* of the MLP's hidden row */
        const int h0 = H * t / T, h1 = H * (t + 1) / T;           /* its attention heads */
        float *my_scores = scores + (size_t)t * end;
        for (int r = 0; r < batch; r++)
            for (int i = c0; i < c1; i++)
                x[(size_t)r * n + i] = m->wte[(size_t)ids[r] * n + i] + m->wpe[(size_t)start * n + i];
#pragma omp barrier
        for (int l = 0; l < m->n_layer; l++) {
            const void *const *w = m->layers + 12 * l;
            layer_norm_cols(x, w[0], w[1], a, n, batch, m->eps, c0, c1);
#pragma omp barrier
            /* this thread's heads: their query, key and value rows of the qkv projection */
            for (int part = 0; part < 3; part++)
                linear_rows(m, w[2], (size_t)part * n, (const float *)w[3] + part * n, a, q + part * n, n, 3 * n, n,
                            batch, h0 * d, h1 * d, 0);
            for (int h = h0; h < h1; h++) {
                float *kh = keys + (((size_t)l * batch) * H + h) * (size_t)L * d;
                float *vh = values + (((size_t)l * batch) * H + h) * (size_t)L * d;
                for (int r = 0; r < batch; r++) {
                    float *kr = kh + (size_t)r * H * L * d, *vr = vh + (size_t)r * H * L * d;
                    const float *qr = q + (size_t)r * 3 * n;
                    for (int i = 0; i < d; i++) {
                        kr[(size_t)start * d + i] = qr[n + h * d + i];
                        vr[(size_t)start * d + i] = qr[2 * n + h * d + i];
                    }
                    const float *qh = qr + h * d;
                    float top = -INFINITY;
                    for (int j = 0; j < end; j++) {
                        const float *kj = kr + (size_t)j * d;
                        float s = 0.f;
#pragma omp simd reduction(+ : s)
                        for (int i = 0; i < d; i++) s += qh[i] * kj[i];
                        s *= scale;
                        my_scores[j] = s;
                        if (s > top) top = s;
                    }
                    float total = 0.f;
#pragma omp simd reduction(+ : total)
                    for (int j = 0; j < end; j++) {
                        my_scores[j] = exp_vec(my_scores[j] - top);
                        total += my_scores[j];
                    }
                    float *out = att + (size_t)r * n + h * d;
                    for (int i = 0; i < d; i++) out[i] = 0.f;
                    for (int j = 0; j < end; j++) {
                        const float p = my_scores[j] / total;
                        const float *vj = vr + (size_t)j * d;
#pragma omp simd
                        for (int i = 0; i < d; i++) out[i] += p * vj[i];
                    }
                }
            }
#pragma omp barrier
            linear_rows(m, w[4], 0, w[5], att, x, n, n, n, batch, c0, c1, 1);
#pragma omp barrier
            layer_norm_cols(x, w[6], w[7], a, n, batch, m->eps, c0, c1);
#pragma omp barrier
            linear_rows(m, w[8], 0, w[9], a, hid, n, 4 * n, n, batch, f0, f1, 0);
            for (int r = 0; r < batch; r++) gelu_inplace(hid + (size_t)r * 4 * n + f0, f1 - f0);
#pragma omp barrier
            linear_rows(m, w[10], 0, w[11], hid, x, 4 * n, n, 4 * n, batch, c0, c1, 1);
#pragma omp barrier
        }
        layer_norm_cols(x, m->lnf_w, m->lnf_b, a, n, batch, m->eps, c0, c1);
#pragma omp barrier
        /* tied head: logits = ln_f(x) @ wte^T, the vocabulary split between the threads (no bias) */
        const int v0 = m->n_vocab * t / T, v1 = m->n_vocab * (t + 1) / T;
        for (int r = 0; r < batch; r++) {
            const float *ar = a + (size_t)r * n;
            for (int v = v0; v < v1; v++) {
                const float *e = m->wte + (size_t)v * n;
                float s = 0.f;
#pragma omp simd reduction(+ : s)
                for (int i = 0; i < n; i++) s += e[i] * ar[i];
                logits[(size_t)r * m->n_vocab + v] = s;
            }
        }
    }
done:
    free(x);
    free(a);
    free(q);
    free(att);
    free(hid);
    free(scores);
    return status;
}
