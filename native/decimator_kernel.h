/* The decimator's hot path, a template: audio_kernels.c includes it once per instruction set, after defining
 *   KERNEL(name)   the suffixed name of each function (e.g. name##_avx2),
 *   KERNEL_TARGET  the function attribute selecting the instruction set (empty for the baseline),
 *   KERNEL_LANES   floats per vector (4: SSE2/NEON, 8: AVX).
 * Every output is one fixed sequence of float32 operations (one lane of one vector: three accumulators, summed in a
 * fixed order) wherever it falls in a call, so within one variant any chunking of the input gives identical output.
 * Variants differ only in FMA contraction, well within the 1 LSB the twin allows.
 */

typedef float KERNEL(vfloat) __attribute__((vector_size(KERNEL_LANES * sizeof(float))));

#define KERNEL_VECTORS (DEC_BLOCK / KERNEL_LANES) /* 3 * KERNEL_VECTORS accumulators stay in registers */
#define KERNEL_LOAD(dst, src) memcpy(&(dst), (src), sizeof(dst))

KERNEL_TARGET static inline void
KERNEL(filter)(const float *u0, const float *u1, const float *u2, float *y, Py_ssize_t count)
{
    /* Whole blocks only: lanes past `count` read stale (finite) buffer entries and are never used. */
    for (Py_ssize_t d = 0; d < count; d += DEC_BLOCK) {
        KERNEL(vfloat) a0[KERNEL_VECTORS], a1[KERNEL_VECTORS], a2[KERNEL_VECTORS];
        for (int v = 0; v < KERNEL_VECTORS; v++) {
            KERNEL(vfloat) centre;
            KERNEL_LOAD(centre, u0 + d + KERNEL_LANES * v + DEC_D);
            a0[v] = dec_centre_tap * centre;
            a1[v] = (KERNEL(vfloat)){0};
            a2[v] = (KERNEL(vfloat)){0};
        }
        for (int m = 0; m < DEC_D; m++) {
            const float h0 = dec_pair_taps[0][m], h1 = dec_pair_taps[1][m], h2 = dec_pair_taps[2][m];
            for (int v = 0; v < KERNEL_VECTORS; v++) {
                const Py_ssize_t o = d + KERNEL_LANES * v;
                KERNEL(vfloat) near, far;
                KERNEL_LOAD(near, u0 + o + DEC_HISTORY - m);
                KERNEL_LOAD(far, u0 + o + m);
                a0[v] += h0 * (near + far);
                KERNEL_LOAD(near, u1 + o + DEC_HISTORY - m);
                KERNEL_LOAD(far, u2 + o + m + 1);
                a1[v] += h1 * (near + far);
                KERNEL_LOAD(near, u2 + o + DEC_HISTORY - m);
                KERNEL_LOAD(far, u1 + o + m + 1);
                a2[v] += h2 * (near + far);
            }
        }
        for (int v = 0; v < KERNEL_VECTORS; v++) {
            KERNEL(vfloat) total = (a0[v] + a1[v]) + a2[v];
            memcpy(y + d + KERNEL_LANES * v, &total, sizeof total);
        }
    }
}

/* Spread `frames` input frames over the phase buffers; returns the outputs they complete (<= DEC_CHUNK). */
KERNEL_TARGET static inline Py_ssize_t
KERNEL(fill)(Decimator *self, const int16_t *in, Py_ssize_t frames, int stereo)
{
    float *u0 = self->u[0], *u1 = self->u[1], *u2 = self->u[2];
    Py_ssize_t pos = DEC_HISTORY, i = 0;
    int pending = self->pending;
    while (pending != 0 && i < frames) {
        if (pending == 1) {
            u1[pos] = dec_sample(in, i++, stereo);
            pending = 2;
        }
        else {
            u0[pos++] = dec_sample(in, i++, stereo);
            pending = 0;
        }
    }
    for (; i + 3 <= frames; i += 3, pos++) {
        u2[pos] = dec_sample(in, i, stereo);
        u1[pos] = dec_sample(in, i + 1, stereo);
        u0[pos] = dec_sample(in, i + 2, stereo);
    }
    if (i < frames) {
        u2[pos] = dec_sample(in, i++, stereo);
        pending = 1;
        if (i < frames) {
            u1[pos] = dec_sample(in, i++, stereo);
            pending = 2;
        }
    }
    self->pending = pending;
    return pos - DEC_HISTORY;
}

KERNEL_TARGET static void
KERNEL(run)(Decimator *self, const int16_t *in, Py_ssize_t frames, int16_t *out)
{
    const int channels = self->channels;
    while (frames > 0) {
        /* At most DEC_CHUNK outputs per pass: (pending + piece) / 3 <= DEC_CHUNK. */
        Py_ssize_t piece = 3 * DEC_CHUNK - self->pending;
        piece = frames < piece ? frames : piece;
        Py_ssize_t count = channels == 2 ? KERNEL(fill)(self, in, piece, 1) : KERNEL(fill)(self, in, piece, 0);
        KERNEL(filter)(self->u[0], self->u[1], self->u[2], self->y, count);
        const float *y = self->y;
        for (Py_ssize_t k = 0; k < count; k++) {
            out[k] = round_clamped(clamp_int16(y[k]));
        }
        for (int p = 0; p < 3; p++) {
            /* Keep the next output's history and pending samples: positions count .. count + 2D. */
            memmove(self->u[p], self->u[p] + count, (DEC_HISTORY + 1) * sizeof(float));
        }
        in += piece * channels;
        frames -= piece;
        out += count;
    }
}

#undef KERNEL_VECTORS
#undef KERNEL_LOAD
