/* GPT-2 decoding over a preallocated key/value cache: T new tokens per row (T = 1 while sampling; a
 * prompt or a known context bar is fed as one call).
 *
 * Why C: at batch 1 a token of the 5M stem transformer spent ~0.7 ms in the 24 matrix-vector
 * products and another ~1.3 ms in the dispatch of ~120 small torch operations, and torch's matrix
 * products repack the weights on every call, so a chunk of 8 tokens cost as much as 10 single tokens.
 * Here every stage of a layer runs in one OpenMP region: each thread owns a slice of every weight
 * matrix's output rows (and a slice of the attention heads), so the weights are streamed once per
 * call by both cores and the threads meet only at the barriers a layer needs.
 *
 * What a token costs on this machine is the bytes it streams: the weights once per call, and the keys
 * and values of every earlier position once per row. The weights can be half floats (m->half) or int8
 * with a scale per row (m->int8), the caches half floats (m->kv_half).
 *
 * Layouts (contiguous, as the Python side prepares them):
 *   wte (vocab, n) - token embedding, also the tied output head; wpe (positions, n): float32
 *   qkv_w (3n, n), out_w (n, n), fc_w (4n, n), proj_w (n, 4n): linear weights as (out, in)
 *   keys, values (layers, batch, heads, max_len, head_dim): float32, or IEEE half floats (uint16)
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
    int half;    /* the four linear weights of each layer are IEEE half floats (uint16), not float32 */
    int kv_half; /* the key/value caches hold IEEE half floats */
    int int8;    /* the linear weights are int8 with a float scale per output row (scales) */
    const float *wte, *wpe, *lnf_w, *lnf_b;
    /* per layer: ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b */
    const void *const *layers;
    const float *const *scales; /* with int8: per layer, the row scales of qkv, out, fc and proj */
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

#if defined(__AVX512F__)
static inline __m512 load_half16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline __m512 load_int8x16(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/* The kernels below, for one weight format (NAME: its element type T, LOAD: 16 of them as floats).
 * block_4x4: y[k][j] (+)= bias[j] + scale[j] * (w_j . x_k) for four weight rows j and four tokens k
 * (x_k = x + k * x_stride); scale is NULL for unscaled weights. block_4x1: one token. */
#define WEIGHT_BLOCKS(NAME, T, LOAD)                                                                              \
    static void block_4x4_##NAME(const T *w0, const T *w1, const T *w2, const T *w3, const float *bias,          \
                                 const float *scale, const float *x, int x_stride, float *y, int out_stride, int in, \
                                 int accumulate) {                                                               \
        __m512 s00 = _mm512_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00;      \
        __m512 s13 = s00, s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00, s32 = s00, s33 = s00; \
        const float *x0 = x, *x1 = x + x_stride, *x2 = x1 + x_stride, *x3 = x2 + x_stride;                       \
        for (int i = 0; i < in; i += 16) {                                                                       \
            const __m512 a0 = LOAD(w0 + i), a1 = LOAD(w1 + i), a2 = LOAD(w2 + i), a3 = LOAD(w3 + i);             \
            __m512 v = _mm512_loadu_ps(x0 + i);                                                                  \
            s00 = _mm512_fmadd_ps(a0, v, s00), s01 = _mm512_fmadd_ps(a1, v, s01);                                \
            s02 = _mm512_fmadd_ps(a2, v, s02), s03 = _mm512_fmadd_ps(a3, v, s03);                                \
            v = _mm512_loadu_ps(x1 + i);                                                                         \
            s10 = _mm512_fmadd_ps(a0, v, s10), s11 = _mm512_fmadd_ps(a1, v, s11);                                \
            s12 = _mm512_fmadd_ps(a2, v, s12), s13 = _mm512_fmadd_ps(a3, v, s13);                                \
            v = _mm512_loadu_ps(x2 + i);                                                                         \
            s20 = _mm512_fmadd_ps(a0, v, s20), s21 = _mm512_fmadd_ps(a1, v, s21);                                \
            s22 = _mm512_fmadd_ps(a2, v, s22), s23 = _mm512_fmadd_ps(a3, v, s23);                                \
            v = _mm512_loadu_ps(x3 + i);                                                                         \
            s30 = _mm512_fmadd_ps(a0, v, s30), s31 = _mm512_fmadd_ps(a1, v, s31);                                \
            s32 = _mm512_fmadd_ps(a2, v, s32), s33 = _mm512_fmadd_ps(a3, v, s33);                                \
        }                                                                                                        \
        const __m512 sums[4][4] = {                                                                              \
            {s00, s01, s02, s03}, {s10, s11, s12, s13}, {s20, s21, s22, s23}, {s30, s31, s32, s33}};             \
        for (int k = 0; k < 4; k++)                                                                              \
            for (int j = 0; j < 4; j++) {                                                                        \
                const float r = _mm512_reduce_add_ps(sums[k][j]) * (scale ? scale[j] : 1.f) + bias[j];           \
                float *out = y + (size_t)k * out_stride + j;                                                     \
                *out = accumulate ? *out + r : r;                                                                \
            }                                                                                                    \
    }                                                                                                            \
    static void block_4x1_##NAME(const T *w0, const T *w1, const T *w2, const T *w3, const float *bias,          \
                                 const float *scale, const float *x, float *y, int in, int accumulate) {         \
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                                             \
        for (int i = 0; i < in; i += 16) {                                                                       \
            const __m512 v = _mm512_loadu_ps(x + i);                                                             \
            s0 = _mm512_fmadd_ps(LOAD(w0 + i), v, s0), s1 = _mm512_fmadd_ps(LOAD(w1 + i), v, s1);                \
            s2 = _mm512_fmadd_ps(LOAD(w2 + i), v, s2), s3 = _mm512_fmadd_ps(LOAD(w3 + i), v, s3);                \
        }                                                                                                        \
        const __m512 sums[4] = {s0, s1, s2, s3};                                                                 \
        for (int j = 0; j < 4; j++) {                                                                            \
            const float r = _mm512_reduce_add_ps(sums[j]) * (scale ? scale[j] : 1.f) + bias[j];                  \
            y[j] = accumulate ? y[j] + r : r;                                                                    \
        }                                                                                                        \
    }                                                                                                            \
    /* rows [r0, r1) (a multiple of four of them) for every token; 16 tokens at a time stay in cache while     \
     * this thread's rows stream past them. Returns the first row left to the caller. */                         \
    static int rows_by_four_##NAME(const T *W, const float *bias, const float *scale, const float *x, float *y,  \
                                   int in, int out_stride, int x_stride, int batch, int r0, int r1, int accumulate) { \
        const int rows = r0 + (r1 - r0) / 4 * 4;                                                                 \
        for (int b0 = 0; b0 < batch; b0 += 16) {                                                                 \
            const int b1 = b0 + 16 < batch ? b0 + 16 : batch;                                                    \
            for (int row = r0; row < rows; row += 4) {                                                           \
                const T *w0 = W + (size_t)row * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;                \
                const float *sc = scale ? scale + row : NULL;                                                    \
                int k = b0;                                                                                      \
                for (; k + 4 <= b1; k += 4)                                                                      \
                    block_4x4_##NAME(w0, w1, w2, w3, bias + row, sc, x + (size_t)k * x_stride, x_stride,         \
                                     y + (size_t)k * out_stride + row, out_stride, in, accumulate);              \
                for (; k < b1; k++)                                                                              \
                    block_4x1_##NAME(w0, w1, w2, w3, bias + row, sc, x + (size_t)k * x_stride,                   \
                                     y + (size_t)k * out_stride + row, in, accumulate);                          \
            }                                                                                                    \
        }                                                                                                        \
        return rows;                                                                                             \
    }
WEIGHT_BLOCKS(half, uint16_t, load_half16)
WEIGHT_BLOCKS(int8, int8_t, load_int8x16)
#endif

/* An IEEE half float nearest to f (ties to even), for the portable path of the half caches. */
static inline uint16_t float_to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    const uint32_t abs = bits & 0x7fffffffu;
    if (abs >= 0x7f800000u) return sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0); /* inf, nan */
    if (abs >= 0x477ff000u) return sign | 0x7c00;                                  /* rounds past 65504 */
    if (abs < 0x38800000u) {                                                       /* subnormal or zero */
        if (abs < 0x33000000u) return sign;
        const uint32_t mant = (abs & 0x7fffff) | 0x800000;
        const int shift = 126 - (int)(abs >> 23);
        uint32_t h = mant >> (shift + 1);
        const uint32_t rest = mant & ((1u << (shift + 1)) - 1), half = 1u << shift;
        if (rest > half || (rest == half && (h & 1))) h++;
        return sign | (uint16_t)h;
    }
    uint32_t h = ((abs - 0x38000000u) >> 13);
    const uint32_t rest = abs & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

/* matvec_rows with half-float weights: half the bytes to stream per token, which is what a token's
 * matrix-vector products are bound by (19 MB of float32 weights for the 5M model). */
static void matvec_rows_half(const uint16_t *W, const float *bias, const float *x, float *y, int in, int out_stride,
                             int x_stride, int batch, int r0, int r1, int accumulate) {
    int o = r0;
#if defined(__AVX512F__)
    if (in % 16 == 0 && batch >= 4) /* several tokens: four rows by four tokens, each weight load used 4x */
        o = rows_by_four_half(W, bias, NULL, x, y, in, out_stride, x_stride, batch, r0, r1, accumulate);
#endif
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

/* matvec_rows with int8 weights, one float scale per row: a quarter of float32's bytes. */
static void matvec_rows_int8(const int8_t *W, const float *scale, const float *bias, const float *x, float *y, int in,
                             int out_stride, int x_stride, int batch, int r0, int r1, int accumulate) {
    int o = r0;
#if defined(__AVX512F__)
    if (in % 16 == 0) o = rows_by_four_int8(W, bias, scale, x, y, in, out_stride, x_stride, batch, r0, r1, accumulate);
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    if (in % 8 == 0) { /* CPUs without AVX-512: four rows per pass, eight weights at a time */
        for (; o + 4 <= r1; o += 4) {
            const int8_t *w0 = W + (size_t)o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
            for (int b = 0; b < batch; b++) {
                const float *xb = x + (size_t)b * x_stride;
                __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
                for (int i = 0; i < in; i += 8) {
                    const __m256 xi = _mm256_loadu_ps(xb + i);
#define INT8X8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
                    s0 = _mm256_fmadd_ps(INT8X8(w0 + i), xi, s0);
                    s1 = _mm256_fmadd_ps(INT8X8(w1 + i), xi, s1);
                    s2 = _mm256_fmadd_ps(INT8X8(w2 + i), xi, s2);
                    s3 = _mm256_fmadd_ps(INT8X8(w3 + i), xi, s3);
#undef INT8X8
                }
                float *yb = y + (size_t)b * out_stride;
                const float r[4] = {hsum8(s0) * scale[o] + bias[o], hsum8(s1) * scale[o + 1] + bias[o + 1],
                                    hsum8(s2) * scale[o + 2] + bias[o + 2], hsum8(s3) * scale[o + 3] + bias[o + 3]};
                for (int k = 0; k < 4; k++) yb[o + k] = accumulate ? yb[o + k] + r[k] : r[k];
            }
        }
    }
#endif
    for (; o < r1; o++) { /* other widths, other CPUs */
        const int8_t *w = W + (size_t)o * in;
        for (int b = 0; b < batch; b++) {
            const float *xb = x + (size_t)b * x_stride;
            float s = 0.f;
            for (int i = 0; i < in; i++) s += (float)w[i] * xb[i];
            float *yb = y + (size_t)b * out_stride;
            const float r = s * scale[o] + bias[o];
            yb[o] = accumulate ? yb[o] + r : r;
        }
    }
}

/* Rows [r0, r1) of linear weight `k` (0 qkv, 1 out, 2 fc, 3 proj) of layer `l`, from row `first` on, in
 * the model's weight format. */
static void linear_rows(const Model *m, int l, int k, size_t first, const float *bias, const float *x, float *y,
                        int in, int out_stride, int x_stride, int batch, int r0, int r1, int accumulate) {
    const void *W = m->layers[12 * l + 2 + 2 * k + (k >= 2 ? 2 : 0)];
    if (m->int8)
        matvec_rows_int8((const int8_t *)W + first * in, m->scales[4 * l + k] + first, bias, x, y, in, out_stride,
                         x_stride, batch, r0, r1, accumulate);
    else if (m->half)
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

/* Key/value row `pos` of one (layer, row, head) cache block: store a head's d values, read them back. */
static inline void kv_store(const Model *m, void *block, int pos, int d, const float *src) {
    if (!m->kv_half) {
        memcpy((float *)block + (size_t)pos * d, src, sizeof(float) * (size_t)d);
        return;
    }
    uint16_t *dst = (uint16_t *)block + (size_t)pos * d;
    int i = 0;
#if defined(__F16C__) && defined(__FMA__)
    for (; i + 8 <= d; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < d; i++) dst[i] = float_to_half(src[i]);
}

/* scores[j] = exp(scores[j] - top) for j < end; returns 1 / their sum (the softmax's normalizer). */
static inline float exponentiate(float *scores, int end, float top) {
    float total = 0.f;
#pragma omp simd reduction(+ : total)
    for (int j = 0; j < end; j++) {
        scores[j] = exp_vec(scores[j] - top);
        total += scores[j];
    }
    return 1.f / total;
}

/* One query against positions [0, end) of one head: softmax(q . k_j * scale) . v_j into out[d]. */
static void attend(const Model *m, const float *qh, const void *kh, const void *vh, int end, int d, float scale,
                   float *scores, float *out) {
    float top = -INFINITY;
#if defined(__AVX512F__)
    if (m->kv_half && d == 64) { /* the stem transformer's heads: a key or value row is four vectors */
        const __m512 q0 = _mm512_loadu_ps(qh), q1 = _mm512_loadu_ps(qh + 16), q2 = _mm512_loadu_ps(qh + 32),
                     q3 = _mm512_loadu_ps(qh + 48);
        const uint16_t *k = (const uint16_t *)kh, *v = (const uint16_t *)vh;
        for (int j = 0; j < end; j++, k += 64) {
            __m512 s = _mm512_mul_ps(q0, load_half16(k));
            s = _mm512_fmadd_ps(q1, load_half16(k + 16), s);
            s = _mm512_fmadd_ps(q2, load_half16(k + 32), s);
            s = _mm512_fmadd_ps(q3, load_half16(k + 48), s);
            scores[j] = _mm512_reduce_add_ps(s) * scale;
            top = scores[j] > top ? scores[j] : top;
        }
        const float inv = exponentiate(scores, end, top);
        __m512 o0 = _mm512_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
        for (int j = 0; j < end; j++, v += 64) {
            const __m512 p = _mm512_set1_ps(scores[j] * inv);
            o0 = _mm512_fmadd_ps(p, load_half16(v), o0), o1 = _mm512_fmadd_ps(p, load_half16(v + 16), o1);
            o2 = _mm512_fmadd_ps(p, load_half16(v + 32), o2), o3 = _mm512_fmadd_ps(p, load_half16(v + 48), o3);
        }
        _mm512_storeu_ps(out, o0), _mm512_storeu_ps(out + 16, o1);
        _mm512_storeu_ps(out + 32, o2), _mm512_storeu_ps(out + 48, o3);
        return;
    }
#endif
#if defined(__F16C__) && defined(__FMA__)
    if (m->kv_half && d % 8 == 0) { /* CPUs without AVX-512: eight halves at a time */
        const uint16_t *k = (const uint16_t *)kh, *v = (const uint16_t *)vh;
        for (int j = 0; j < end; j++, k += d) {
            __m256 acc = _mm256_setzero_ps();
            for (int i = 0; i < d; i += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))),
                                      acc);
            scores[j] = hsum8(acc) * scale;
            top = scores[j] > top ? scores[j] : top;
        }
        const float inv = exponentiate(scores, end, top);
        for (int i = 0; i < d; i++) out[i] = 0.f;
        for (int j = 0; j < end; j++, v += d) {
            const __m256 pj = _mm256_set1_ps(scores[j] * inv);
            for (int i = 0; i < d; i += 8)
                _mm256_storeu_ps(out + i, _mm256_fmadd_ps(pj, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))),
                                                          _mm256_loadu_ps(out + i)));
        }
        return;
    }
#endif
    for (int j = 0; j < end; j++) {
        float s = 0.f;
        if (m->kv_half) {
            const uint16_t *kj = (const uint16_t *)kh + (size_t)j * d;
            for (int i = 0; i < d; i++) s += qh[i] * half_to_float(kj[i]);
        } else {
            const float *kj = (const float *)kh + (size_t)j * d;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < d; i++) s += qh[i] * kj[i];
        }
        s *= scale;
        scores[j] = s;
        if (s > top) top = s;
    }
    const float inv = exponentiate(scores, end, top);
    for (int i = 0; i < d; i++) out[i] = 0.f;
    for (int j = 0; j < end; j++) {
        const float p = scores[j] * inv;
        if (m->kv_half) {
            const uint16_t *vj = (const uint16_t *)vh + (size_t)j * d;
            for (int i = 0; i < d; i++) out[i] += p * half_to_float(vj[i]);
        } else {
            const float *vj = (const float *)vh + (size_t)j * d;
#pragma omp simd
            for (int i = 0; i < d; i++) out[i] += p * vj[i];
        }
    }
}

/* Feeds ids[batch][T] at positions start..start+T-1, writes their keys and values into the caches and
 * the next-token logits after each row's last token into logits[batch][vocab]. Returns 0, -1 when out
 * of memory, -2 for a token id outside the vocabulary or positions outside the cache. */
int midiarr_decode(const Model *m, int batch, int T, int start, const long long *ids, void *keys, void *values,
                   float *logits, int threads) {
    const int n = m->n_embd, H = m->n_head, d = n / H, L = m->max_len;
    if (start < 0 || T < 1 || start + T > L || batch < 1 || threads < 1) return -2;
    const int R = batch * T; /* rows of every activation: row r * T + t is row r's t-th new token */
    for (int r = 0; r < R; r++)
        if (ids[r] < 0 || ids[r] >= m->n_vocab) return -2;
    const size_t item = m->kv_half ? sizeof(uint16_t) : sizeof(float);
    float *x = malloc(sizeof(float) * (size_t)R * n);
    float *a = malloc(sizeof(float) * (size_t)R * n);
    float *q = malloc(sizeof(float) * (size_t)R * 3 * n); /* q, k, v of each row */
    float *att = malloc(sizeof(float) * (size_t)R * n);
    float *hid = malloc(sizeof(float) * (size_t)R * 4 * n);
    float *scores = malloc(sizeof(float) * (size_t)threads * L);
    int status = 0;
    if (!x || !a || !q || !att || !hid || !scores) {
        status = -1;
        goto done;
    }
    const float scale = 1.f / sqrtf((float)d);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), P = omp_get_num_threads();
        const int c0 = n * t / P, c1 = n * (t + 1) / P;         /* this thread's columns of a width-n row */
        const int f0 = 4 * n * t / P, f1 = 4 * n * (t + 1) / P; /* of the MLP's hidden row */
        const int h0 = H * t / P, h1 = H * (t + 1) / P;         /* its attention heads */
        float *my_scores = scores + (size_t)t * L;
        for (int r = 0; r < R; r++)
            for (int i = c0; i < c1; i++)
                x[(size_t)r * n + i] = m->wte[(size_t)ids[r] * n + i] + m->wpe[(size_t)(start + r % T) * n + i];
#pragma omp barrier
        for (int l = 0; l < m->n_layer; l++) {
            const void *const *w = m->layers + 12 * l;
            layer_norm_cols(x, w[0], w[1], a, n, R, m->eps, c0, c1);
#pragma omp barrier
            /* this thread's heads: their query, key and value rows of the qkv projection */
            for (int part = 0; part < 3; part++)
                linear_rows(m, l, 0, (size_t)part * n, (const float *)w[3] + part * n, a, q + part * n, n, 3 * n, n,
                            R, h0 * d, h1 * d, 0);
            for (int h = h0; h < h1; h++)
                for (int r = 0; r < batch; r++) {
                    /* the (layer, row, head) blocks of the caches: max_len positions of d values */
                    const size_t block = ((((size_t)l * batch + r) * H + h) * (size_t)L * d) * item;
                    char *kh = (char *)keys + block, *vh = (char *)values + block;
                    for (int s = 0; s < T; s++) { /* every new key and value first: later tokens attend to them */
                        const float *qr = q + ((size_t)r * T + s) * 3 * n;
                        kv_store(m, kh, start + s, d, qr + n + h * d);
                        kv_store(m, vh, start + s, d, qr + 2 * n + h * d);
                    }
                    for (int s = 0; s < T; s++) {
                        const size_t row = (size_t)r * T + s;
                        attend(m, q + row * 3 * n + h * d, kh, vh, start + s + 1, d, scale, my_scores,
                               att + row * n + h * d);
                    }
                }
#pragma omp barrier
            linear_rows(m, l, 1, 0, w[5], att, x, n, n, n, R, c0, c1, 1);
#pragma omp barrier
            layer_norm_cols(x, w[6], w[7], a, n, R, m->eps, c0, c1);
#pragma omp barrier
            linear_rows(m, l, 2, 0, w[9], a, hid, n, 4 * n, n, R, f0, f1, 0);
            for (int r = 0; r < R; r++) gelu_inplace(hid + (size_t)r * 4 * n + f0, f1 - f0);
#pragma omp barrier
            linear_rows(m, l, 3, 0, w[11], hid, x, 4 * n, n, 4 * n, R, c0, c1, 1);
#pragma omp barrier
        }
        /* only each row's last token goes on to the head */
        for (int r = 0; r < batch; r++) {
            const size_t last = (size_t)r * T + T - 1;
            layer_norm_cols(x + last * n, m->lnf_w, m->lnf_b, a + (size_t)r * n, n, 1, m->eps, c0, c1);
        }
#pragma omp barrier
        /* tied head: logits = ln_f(x) @ wte^T, the vocabulary split between the threads (no bias) */
        const int v0 = m->n_vocab * t / P, v1 = m->n_vocab * (t + 1) / P;
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
