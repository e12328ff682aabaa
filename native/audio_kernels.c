/* mediabot.audio._native: the C twin of mediabot/audio/_kernels_py.py.
 *
 * Same functions, same signatures, same results (documented there). Arrays come in through the buffer protocol
 * only (no numpy C API, no numpy headers): 1-D buffers of format 'h' (int16), 'f' (float32) or 'd' (float64);
 * strided buffers are copied to contiguous scratch. New arrays (out=None) are made by calling numpy.empty.
 * Nothing here releases the GIL: every call is a few microseconds on one 20 ms frame.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "decimator_taps.h"

#define FULL_SCALE 32768.0
#define LEVEL_FLOOR_DBFS (-120.0)

static PyObject *numpy_empty;   /* numpy.empty */
static PyObject *dtype_int16;   /* numpy.dtype("int16") */
static PyObject *dtype_float32; /* numpy.dtype("float32") */
static PyObject *dtype_float64; /* numpy.dtype("float64") */

/* -- arguments -------------------------------------------------------------------------------------------------- */

/* Vectorcall arguments → objs[0..count) by position or keyword; the first `required` must be given, later ones may
 * be missing or None (both give NULL). */
static int
parse_args(const char *function, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           const char *const *names, int count, int required, PyObject **objs)
{
    for (int i = 0; i < count; i++) {
        objs[i] = NULL;
    }
    if (nargs > count) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", function, count, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        objs[i] = args[i];
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = 0; i < count; i++) {
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                found = i;
                break;
            }
        }
        if (found < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", function, key);
            return -1;
        }
        if (objs[found] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", function, names[found]);
            return -1;
        }
        objs[found] = args[nargs + k];
    }
    for (int i = 0; i < count; i++) {
        if (i < required && objs[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function, names[i]);
            return -1;
        }
        if (i >= required && objs[i] == Py_None) {
            objs[i] = NULL;
        }
    }
    return 0;
}

/* -- buffers ---------------------------------------------------------------------------------------------------- */

typedef struct {
    Py_buffer view;
    int acquired;
    int writable;
    void *data;     /* contiguous items: view.buf, or tmp for a strided buffer */
    void *tmp;      /* PyMem scratch copy of a strided buffer (written back on release when writable) */
    Py_ssize_t len; /* items along the only dimension */
} Array;

typedef struct {
    char code;           /* struct-module format character */
    Py_ssize_t itemsize; /* bytes per item */
    const char *name;    /* numpy's name, for messages */
} Kind;

static const Kind INT16 = {'h', 2, "int16"};
static const Kind FLOAT32 = {'f', 4, "float32"};
static const Kind FLOAT64 = {'d', 8, "float64"};

static int
format_is(const char *format, char code)
{
    if (format == NULL) {
        return code == 'B';
    }
    if (*format == '@' || *format == '=') {
        format++;
    }
    else if (*format == '<' || *format == '>' || *format == '!') {
        if ((*format == '<') != (PY_LITTLE_ENDIAN != 0)) {
            return 0;
        }
        format++;
    }
    return format[0] == code && format[1] == '\0';
}

static void
array_release(Array *a, int commit)
{
    if (a->tmp != NULL) {
        if (commit && a->writable) {
            /* Cannot fail: same length, and the view was checked when acquired. */
            (void)PyBuffer_FromContiguous(&a->view, a->tmp, a->len * a->view.itemsize, 'C');
        }
        PyMem_Free(a->tmp);
        a->tmp = NULL;
    }
    if (a->acquired) {
        PyBuffer_Release(&a->view);
        a->acquired = 0;
    }
}

/* A 1-D buffer of `kind` (writable if asked), or ValueError naming `name`. `a` is always safe to release. */
static int
array_get(PyObject *obj, const char *name, const Kind *kind, int writable, Array *a)
{
    memset(a, 0, sizeof *a);
    if (PyObject_GetBuffer(obj, &a->view, PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a %s1-D %s array, got %.200s", name, writable ? "writable " : "",
                     kind->name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    a->acquired = 1;
    a->writable = writable;
    if (a->view.ndim != 1 || a->view.itemsize != kind->itemsize || !format_is(a->view.format, kind->code)) {
        PyErr_Format(PyExc_ValueError, "%s must be a 1-D %s array, got a %d-D buffer of format '%s'", name,
                     kind->name, a->view.ndim, a->view.format == NULL ? "B" : a->view.format);
        array_release(a, 0);
        return -1;
    }
    a->len = a->view.shape[0];
    if (PyBuffer_IsContiguous(&a->view, 'C')) {
        a->data = a->view.buf;
        return 0;
    }
    a->tmp = PyMem_Malloc((size_t)(a->len * kind->itemsize) + 1);
    if (a->tmp == NULL) {
        array_release(a, 0);
        PyErr_NoMemory();
        return -1;
    }
    if (PyBuffer_ToContiguous(a->tmp, &a->view, a->len * kind->itemsize, 'C') < 0) {
        array_release(a, 0);
        return -1;
    }
    a->data = a->tmp;
    return 0;
}

/* `out` if given (checked to be 1-D `kind` of exactly `length` items), else a new numpy array; a new reference. */
static PyObject *
output_get(PyObject *out, Py_ssize_t length, PyObject *dtype, const Kind *kind, Array *a)
{
    if (out == NULL) {
        PyObject *size = PyLong_FromSsize_t(length);
        if (size == NULL) {
            return NULL;
        }
        PyObject *args[2] = {size, dtype};
        out = PyObject_Vectorcall(numpy_empty, args, 2, NULL);
        Py_DECREF(size);
        if (out == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(out);
    }
    if (array_get(out, "out", kind, 1, a) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    if (a->len != length) {
        PyErr_Format(PyExc_ValueError, "out must be a 1-D %s array of %zd samples, got %zd", kind->name, length,
                     a->len);
        array_release(a, 0);
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* -- rounding ----------------------------------------------------------------------------------------------------- */

/* round-half-even of a float already clamped to [-32768, 32767]: adding and removing 1.5 * 2**23 leaves the nearest
 * integer (ties to even) in the default rounding mode; valid because floats are evaluated in float precision. */
static inline int16_t
round_clamped(float v)
{
#if FLT_EVAL_METHOD == 0
    const float magic = 12582912.0f;
    return (int16_t)((v + magic) - magic);
#else
    return (int16_t)nearbyintf(v);
#endif
}

static inline float
clamp_int16(float v)
{
    v = v < -32768.0f ? -32768.0f : v;
    return v > 32767.0f ? 32767.0f : v;
}

/* -- downmix ---------------------------------------------------------------------------------------------------- */

static void
downmix_kernel(const int16_t *in, Py_ssize_t frames, Py_ssize_t channels, int16_t *out)
{
    if (channels == 1) {
        memmove(out, in, (size_t)frames * sizeof *out);
    }
    else if (channels == 2) {
        /* floor((l + r + 1) / 2): the offset keeps the dividend non-negative, where C division is floor. */
        for (Py_ssize_t i = 0; i < frames; i++) {
            int32_t sum = (int32_t)in[2 * i] + (int32_t)in[2 * i + 1] + 1 + 65536;
            out[i] = (int16_t)(sum / 2 - 32768);
        }
    }
    else {
        const int64_t offset = (int64_t)channels * 32768;
        for (Py_ssize_t i = 0; i < frames; i++) {
            int64_t sum = channels / 2 + offset;
            for (Py_ssize_t c = 0; c < channels; c++) {
                sum += in[i * channels + c];
            }
            out[i] = (int16_t)(sum / channels - 32768);
        }
    }
}

static PyObject *
native_downmix(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"interleaved", "channels", "out"};
    PyObject *objs[3];
    if (parse_args("downmix", args, nargs, kwnames, names, 3, 2, objs) < 0) {
        return NULL;
    }
    Array in, out;
    if (array_get(objs[0], "interleaved", &INT16, 0, &in) < 0) {
        return NULL;
    }
    Py_ssize_t channels = PyLong_AsSsize_t(objs[1]);
    if (channels == -1 && PyErr_Occurred()) {
        array_release(&in, 0);
        return NULL;
    }
    if (channels < 1) {
        PyErr_Format(PyExc_ValueError, "channels must be >= 1, got %zd", channels);
        array_release(&in, 0);
        return NULL;
    }
    if (in.len % channels) {
        PyErr_Format(PyExc_ValueError, "%zd samples is not a whole number of %zd-channel frames", in.len, channels);
        array_release(&in, 0);
        return NULL;
    }
    Py_ssize_t frames = in.len / channels;
    PyObject *result = output_get(objs[2], frames, dtype_int16, &INT16, &out);
    if (result != NULL) {
        downmix_kernel(in.data, frames, channels, out.data);
        array_release(&out, 1);
    }
    array_release(&in, 0);
    return result;
}

/* -- mix -------------------------------------------------------------------------------------------------------- */

#define MIX_BLOCK 256

static void
mix_kernel(const int16_t *const *tracks, Py_ssize_t count, Py_ssize_t length, int16_t *out)
{
    if (count == 0) {
        memset(out, 0, (size_t)length * sizeof *out);
        return;
    }
    if (count == 1) {
        memmove(out, tracks[0], (size_t)length * sizeof *out);
        return;
    }
    /* Each block of every track is read before that block of out is written, so out may be one of the tracks. */
    int32_t total[MIX_BLOCK];
    for (Py_ssize_t start = 0; start < length; start += MIX_BLOCK) {
        Py_ssize_t n = length - start < MIX_BLOCK ? length - start : MIX_BLOCK;
        const int16_t *first = tracks[0] + start;
        for (Py_ssize_t i = 0; i < n; i++) {
            total[i] = first[i];
        }
        for (Py_ssize_t t = 1; t < count; t++) {
            const int16_t *track = tracks[t] + start;
            for (Py_ssize_t i = 0; i < n; i++) {
                total[i] += track[i];
            }
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t v = total[i] < -32768 ? -32768 : total[i];
            out[start + i] = (int16_t)(v > 32767 ? 32767 : v);
        }
    }
}

static PyObject *
native_mix_saturating(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"tracks", "out"};
    PyObject *objs[2];
    if (parse_args("mix_saturating", args, nargs, kwnames, names, 2, 2, objs) < 0) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(objs[0], "tracks must be a sequence of 1-D int16 arrays");
    if (seq == NULL) {
        return NULL;
    }
    Array out;
    if (array_get(objs[1], "out", &INT16, 1, &out) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    Array *tracks = PyMem_Calloc((size_t)count + 1, sizeof *tracks);
    const int16_t **data = PyMem_Calloc((size_t)count + 1, sizeof *data);
    PyObject *result = NULL;
    Py_ssize_t acquired = 0;
    if (tracks == NULL || data == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; acquired < count; acquired++) {
        Array *track = &tracks[acquired];
        if (array_get(PySequence_Fast_GET_ITEM(seq, acquired), "track", &INT16, 0, track) < 0) {
            goto done;
        }
        if (track->len != out.len) {
            PyErr_Format(PyExc_ValueError, "every track must have %zd samples like out, got %zd", out.len, track->len);
            acquired++;
            goto done;
        }
        data[acquired] = track->data;
    }
    mix_kernel(data, count, out.len, out.data);
    result = objs[1];
    Py_INCREF(result);
done:
    for (Py_ssize_t t = 0; t < acquired; t++) {
        array_release(&tracks[t], 0);
    }
    array_release(&out, result != NULL);
    PyMem_Free(tracks);
    PyMem_Free(data);
    Py_DECREF(seq);
    return result;
}

/* -- level ------------------------------------------------------------------------------------------------------ */

static PyObject *
native_level_dbfs(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"frame"};
    PyObject *objs[1];
    if (parse_args("level_dbfs", args, nargs, kwnames, names, 1, 1, objs) < 0) {
        return NULL;
    }
    Array frame;
    if (array_get(objs[0], "frame", &INT16, 0, &frame) < 0) {
        return NULL;
    }
    const int16_t *x = frame.data;
    /* Exact: an int64 holds 2**33 full-scale squares (the twin's float64 sum is exact below 2**23 samples). */
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < frame.len; i++) {
        total += (int32_t)x[i] * (int32_t)x[i];
    }
    Py_ssize_t n = frame.len;
    array_release(&frame, 0);
    if (n == 0 || total == 0) {
        return PyFloat_FromDouble(LEVEL_FLOOR_DBFS);
    }
    /* The twin's float operations in the twin's order, so both give the same double. */
    double mean_square = (double)total / ((double)n * FULL_SCALE * FULL_SCALE);
    double level = 10.0 * log10(mean_square);
    return PyFloat_FromDouble(level > LEVEL_FLOOR_DBFS ? level : LEVEL_FLOOR_DBFS);
}

/* -- Goertzel --------------------------------------------------------------------------------------------------- */

static double
dot(const double *a, const double *b, Py_ssize_t n)
{
    double lanes[8] = {0.0};
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            lanes[l] += a[i + l] * b[i + l];
        }
    }
    double total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for (; i < n; i++) {
        total += a[i] * b[i];
    }
    return total;
}

static PyObject *
native_goertzel_power(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"frame", "bank", "out"};
    PyObject *objs[3];
    if (parse_args("goertzel_power", args, nargs, kwnames, names, 3, 2, objs) < 0) {
        return NULL;
    }
    Array frame, out;
    Py_buffer matrix;
    if (array_get(objs[0], "frame", &INT16, 0, &frame) < 0) {
        return NULL;
    }
    PyObject *matrix_obj = PyObject_GetAttrString(objs[1], "matrix");
    if (matrix_obj == NULL) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "bank must be a GoertzelBank");
        array_release(&frame, 0);
        return NULL;
    }
    int got = PyObject_GetBuffer(matrix_obj, &matrix, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT);
    Py_DECREF(matrix_obj);
    if (got < 0 || matrix.ndim != 2 || matrix.itemsize != 8 || !format_is(matrix.format, 'd') ||
        matrix.shape[0] % 2 || matrix.shape[0] == 0) {
        if (got == 0) {
            PyBuffer_Release(&matrix);
        }
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "bank.matrix must be a C-contiguous float64 array of shape (2F, block)");
        array_release(&frame, 0);
        return NULL;
    }
    Py_ssize_t block = matrix.shape[1];
    Py_ssize_t count = matrix.shape[0] / 2;
    PyObject *result = NULL;
    double stack[1024];
    double *samples = stack;
    if (frame.len != block) {
        PyErr_Format(PyExc_ValueError, "the bank works on %zd-sample frames, got %zd", block, frame.len);
        goto done;
    }
    if (block > (Py_ssize_t)(sizeof stack / sizeof *stack)) {
        samples = PyMem_Malloc((size_t)block * sizeof *samples);
        if (samples == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    result = output_get(objs[2], count, dtype_float64, &FLOAT64, &out);
    if (result == NULL) {
        goto done;
    }
    const int16_t *x = frame.data;
    for (Py_ssize_t i = 0; i < block; i++) {
        samples[i] = x[i];
    }
    const double *rows = matrix.buf;
    double *power = out.data;
    for (Py_ssize_t f = 0; f < count; f++) {
        double c = dot(rows + f * block, samples, block);
        double s = dot(rows + (count + f) * block, samples, block);
        power[f] = c * c + s * s;
    }
    array_release(&out, 1);
done:
    if (samples != stack) {
        PyMem_Free(samples);
    }
    PyBuffer_Release(&matrix);
    array_release(&frame, 0);
    return result;
}

/* -- float conversion ------------------------------------------------------------------------------------------- */

static PyObject *
native_to_float(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"frame", "out"};
    PyObject *objs[2];
    if (parse_args("to_float", args, nargs, kwnames, names, 2, 1, objs) < 0) {
        return NULL;
    }
    Array frame, out;
    if (array_get(objs[0], "frame", &INT16, 0, &frame) < 0) {
        return NULL;
    }
    PyObject *result = output_get(objs[1], frame.len, dtype_float32, &FLOAT32, &out);
    if (result != NULL) {
        const int16_t *x = frame.data;
        float *y = out.data;
        for (Py_ssize_t i = 0; i < frame.len; i++) {
            y[i] = (float)x[i] * (float)(1.0 / FULL_SCALE);
        }
        array_release(&out, 1);
    }
    array_release(&frame, 0);
    return result;
}

static PyObject *
native_to_int16(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"samples", "out"};
    PyObject *objs[2];
    if (parse_args("to_int16", args, nargs, kwnames, names, 2, 1, objs) < 0) {
        return NULL;
    }
    Array samples, out;
    if (array_get(objs[0], "samples", &FLOAT32, 0, &samples) < 0) {
        return NULL;
    }
    PyObject *result = output_get(objs[1], samples.len, dtype_int16, &INT16, &out);
    if (result != NULL) {
        const float *x = samples.data;
        int16_t *y = out.data;
        for (Py_ssize_t i = 0; i < samples.len; i++) {
            float v = x[i] * (float)FULL_SCALE;
            v = v == v ? v : 0.0f; /* NaN → 0 */
            y[i] = round_clamped(clamp_int16(v));
        }
        array_release(&out, 1);
    }
    array_release(&samples, 0);
    return result;
}

/* -- Decimator -------------------------------------------------------------------------------------------------- */

/* Polyphase, symmetric: x[n] goes to phase stream u0[k] = x[3k], u1[k] = x[3k-1] or u2[k] = x[3k-2]. With
 * D = DECIMATOR_DELAY (taps = 6D + 1, centre tap 3D) and tap pairs j, 6D - j folded together,
 *   y[k] = h[3D] u0[k-D] + sum_{m<D} h[3m]   (u0[k-m] + u0[k-2D+m])
 *                        + h[3m+1] (u1[k-m] + u2[k-2D+m+1])
 *                        + h[3m+2] (u2[k-m] + u1[k-2D+m+1]).
 * Buffer position P holds u_p[k_next - 2D + P] (k_next: the next output), so output k_next + d reads positions
 * d .. d + 2D. Inputs are exact in float32 (stereo: the exact mean); the sums are float32, within 1 LSB of the
 * twin's exact ones. The hot path itself is in decimator_kernel.h, compiled once per instruction set. */

#define DEC_D DECIMATOR_DELAY
#define DEC_HISTORY (2 * DEC_D)
#define DEC_BLOCK 32   /* outputs per block: 3 accumulators of 32 floats fill the vector registers */
#define DEC_CHUNK 1024 /* outputs per pass over the phase buffers (a multiple of DEC_BLOCK) */
#define DEC_CAPACITY (DEC_CHUNK + DEC_HISTORY + DEC_BLOCK)

#if DECIMATOR_TAP_COUNT != 6 * DECIMATOR_DELAY + 1
#error "the decimator needs 6 * delay + 1 taps"
#endif

static float dec_pair_taps[3][DEC_D]; /* dec_pair_taps[p][m] = h[3m + p] */
static float dec_centre_tap;          /* h[3D] */

typedef struct {
    PyObject_HEAD
    int channels;
    int pending; /* input samples already in the buffers for output k_next: u2 (1), u2 and u1 (2) */
    float u[3][DEC_CAPACITY];
    float y[DEC_CHUNK];
} Decimator;

static inline float
dec_sample(const int16_t *in, Py_ssize_t i, int stereo)
{
    if (stereo) {
        return 0.5f * (float)((int32_t)in[2 * i] + (int32_t)in[2 * i + 1]); /* exact */
    }
    return (float)in[i];
}

/* The baseline variant: 4-float vectors (SSE2 on x86-64, NEON on arm64, generic elsewhere). */
#define KERNEL(name) name##_base
#define KERNEL_TARGET
#define KERNEL_LANES 4
#include "decimator_kernel.h"
#undef KERNEL
#undef KERNEL_TARGET
#undef KERNEL_LANES

/* On x86-64 with GCC or Clang, an AVX2 + FMA variant too, chosen at import when the CPU has both. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DEC_HAVE_AVX2 1
#define KERNEL(name) name##_avx2
#define KERNEL_TARGET __attribute__((target("avx2,fma")))
#define KERNEL_LANES 8
#include "decimator_kernel.h"
#undef KERNEL
#undef KERNEL_TARGET
#undef KERNEL_LANES
#endif

typedef void (*dec_run_fn)(Decimator *, const int16_t *, Py_ssize_t, int16_t *);
static dec_run_fn dec_run = run_base;
static const char *dec_variant = "baseline";

static void
dec_select_variant(void)
{
#ifdef DEC_HAVE_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dec_run = run_avx2;
        dec_variant = "avx2+fma";
    }
#endif
}

static void
dec_reset(Decimator *self)
{
    memset(self->u, 0, sizeof self->u);
    self->pending = 2; /* x[-2] and x[-1], both zero history, are in place for output 0 */
}

static PyObject *
Decimator_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"channels", NULL};
    int channels;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i:Decimator", names, &channels)) {
        return NULL;
    }
    if (channels != 1 && channels != 2) {
        PyErr_Format(PyExc_ValueError, "channels must be 1 or 2, got %d", channels);
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Decimator *self = (Decimator *)alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->channels = channels;
    dec_reset(self);
    return (PyObject *)self;
}

static void
Decimator_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(self);
    Py_DECREF(type);
}

static Py_ssize_t
dec_max_output(Py_ssize_t frames)
{
    return frames / 3 + (frames % 3 != 0);
}

/* process()/flush(): `in` frames in, outputs into `out_obj` (>= max_output) or a new array of exactly the count. */
static PyObject *
dec_process(Decimator *self, const int16_t *in, Py_ssize_t frames, PyObject *out_obj)
{
    Py_ssize_t count = (self->pending + frames) / 3;
    Array out;
    PyObject *result;
    if (out_obj == NULL) {
        result = output_get(NULL, count, dtype_int16, &INT16, &out);
        if (result == NULL) {
            return NULL;
        }
        dec_run(self, in, frames, out.data);
        array_release(&out, 1);
        return result;
    }
    if (array_get(out_obj, "out", &INT16, 1, &out) < 0) {
        return NULL;
    }
    if (out.len < dec_max_output(frames)) {
        PyErr_Format(PyExc_ValueError, "out must hold at least %zd samples for %zd frames, got %zd",
                     dec_max_output(frames), frames, out.len);
        array_release(&out, 0);
        return NULL;
    }
    /* out itself when it is exactly the right size (the usual case: a frame's max_output), else out[:count]. */
    if (out.len == count) {
        result = out_obj;
        Py_INCREF(result);
    }
    else {
        result = PySequence_GetSlice(out_obj, 0, count);
    }
    if (result != NULL) {
        dec_run(self, in, frames, out.data);
    }
    array_release(&out, result != NULL);
    return result;
}

static PyObject *
Decimator_process(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Decimator *self = (Decimator *)op;
    static const char *const names[] = {"samples", "out"};
    PyObject *objs[2];
    if (parse_args("process", args, nargs, kwnames, names, 2, 1, objs) < 0) {
        return NULL;
    }
    Array samples;
    if (array_get(objs[0], "samples", &INT16, 0, &samples) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (samples.len % self->channels) {
        PyErr_Format(PyExc_ValueError, "%zd samples is not a whole number of %d-channel frames", samples.len,
                     self->channels);
    }
    else {
        result = dec_process(self, samples.data, samples.len / self->channels, objs[1]);
    }
    array_release(&samples, 0);
    return result;
}

static PyObject *
Decimator_flush(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Decimator *self = (Decimator *)op;
    static const char *const names[] = {"out"};
    PyObject *objs[1];
    if (parse_args("flush", args, nargs, kwnames, names, 1, 0, objs) < 0) {
        return NULL;
    }
    static const int16_t zeros[3 * DEC_D * 2] = {0};
    PyObject *result = dec_process(self, zeros, 3 * DEC_D, objs[0]);
    if (result != NULL) {
        dec_reset(self);
    }
    return result;
}

static PyObject *
Decimator_reset(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    dec_reset((Decimator *)op);
    Py_RETURN_NONE;
}

static PyObject *
Decimator_max_output(PyObject *Py_UNUSED(cls), PyObject *arg)
{
    Py_ssize_t frames = PyLong_AsSsize_t(arg);
    if (frames == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (frames < 0) {
        PyErr_Format(PyExc_ValueError, "frames must be >= 0, got %zd", frames);
        return NULL;
    }
    return PyLong_FromSsize_t(dec_max_output(frames));
}

static PyObject *
Decimator_get_channels(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(((Decimator *)op)->channels);
}

static PyObject *
Decimator_repr(PyObject *op)
{
    return PyUnicode_FromFormat("Decimator(channels=%d)", ((Decimator *)op)->channels);
}

static PyMethodDef Decimator_methods[] = {
    {"process", (PyCFunction)(void (*)(void))Decimator_process, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("process(samples, out=None)\n--\n\nFilter the next interleaved samples; the new output samples, a view "
               "of out (>= max_output) if given.")},
    {"flush", (PyCFunction)(void (*)(void))Decimator_flush, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("flush(out=None)\n--\n\nEnd of stream: push 3 * delay zero frames through, return the last delay "
               "outputs, then reset.")},
    {"reset", Decimator_reset, METH_NOARGS,
     PyDoc_STR("reset()\n--\n\nForget the history and the phase: the next sample is input sample 0 again.")},
    {"max_output", Decimator_max_output, METH_O | METH_STATIC,
     PyDoc_STR("max_output(frames)\n--\n\nThe most output samples process() can return for frames input samples per "
               "channel.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Decimator_getset[] = {
    {"channels", Decimator_get_channels, NULL, PyDoc_STR("Input channels: 1, or 2 (interleaved, averaged)."), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Decimator_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR(
                    "Decimator(channels)\n--\n\n48 kHz interleaved int16 (1 or 2 channels) -> 16 kHz mono int16: a "
                    "linear-phase FIR decimate-by-3, streaming.\n\nSee mediabot.audio._kernels_py.Decimator; this one "
                    "accumulates in float32 and is within 1 LSB of that exactly rounded twin.")},
    {Py_tp_new, Decimator_new},
    {Py_tp_dealloc, Decimator_dealloc},
    {Py_tp_repr, Decimator_repr},
    {Py_tp_methods, Decimator_methods},
    {Py_tp_getset, Decimator_getset},
    {0, NULL},
};

static PyType_Spec Decimator_spec = {
    .name = "mediabot.audio._native.Decimator",
    .basicsize = sizeof(Decimator),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Decimator_slots,
};

static void
dec_init_taps(void)
{
    const float unit = 1.0f / 1073741824.0f; /* 2**-30: every tap is an integer count of it, exact in float32 */
    for (int m = 0; m < DEC_D; m++) {
        for (int p = 0; p < 3; p++) {
            dec_pair_taps[p][m] = (float)decimator_taps_q30[3 * m + p] * unit;
        }
    }
    dec_centre_tap = (float)decimator_taps_q30[3 * DEC_D] * unit;
}

/* -- module ----------------------------------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"downmix", (PyCFunction)(void (*)(void))native_downmix, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("downmix(interleaved, channels, out=None)\n--\n\nInterleaved int16 -> mono, each frame "
               "floor((sum + channels // 2) / channels) (ties up), into out.")},
    {"mix_saturating", (PyCFunction)(void (*)(void))native_mix_saturating, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("mix_saturating(tracks, out)\n--\n\nSum equal-length int16 tracks into out (int32 accumulator, "
               "clipped to int16); no tracks gives silence.")},
    {"level_dbfs", (PyCFunction)(void (*)(void))native_level_dbfs, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("level_dbfs(frame)\n--\n\nRMS level in dBFS relative to FULL_SCALE; LEVEL_FLOOR_DBFS at least.")},
    {"goertzel_power", (PyCFunction)(void (*)(void))native_goertzel_power, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("goertzel_power(frame, bank, out=None)\n--\n\nPower of frame at each of bank's frequencies "
               "(mean-square units, full-scale sine -> 0.5).")},
    {"to_float", (PyCFunction)(void (*)(void))native_to_float, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("to_float(frame, out=None)\n--\n\nint16 -> float32 in [-1, 1): sample / 32768 (exact).")},
    {"to_int16", (PyCFunction)(void (*)(void))native_to_int16, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("to_int16(samples, out=None)\n--\n\nfloat32 -> int16: round(sample * 32768) (half to even), "
               "saturated to int16 (NaN -> 0).")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mediabot.audio._native",
    .m_doc = PyDoc_STR("The native audio kernels: the C twin of mediabot.audio._kernels_py (built from native/)."),
    .m_size = -1,
    .m_methods = module_methods,
};

static PyObject *
dtype_named(PyObject *numpy, const char *name)
{
    return PyObject_CallMethod(numpy, "dtype", "s", name);
}

/* module.name = value, stealing value (NULL: an error already set). */
static int
add_steal(PyObject *target, const char *name, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int rc = PyObject_SetAttrString(target, name, value);
    Py_DECREF(value);
    return rc;
}

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *numpy = PyImport_ImportModule("numpy");
    if (numpy == NULL) {
        return NULL;
    }
    numpy_empty = PyObject_GetAttrString(numpy, "empty");
    dtype_int16 = dtype_named(numpy, "int16");
    dtype_float32 = dtype_named(numpy, "float32");
    dtype_float64 = dtype_named(numpy, "float64");
    Py_DECREF(numpy);
    if (numpy_empty == NULL || dtype_int16 == NULL || dtype_float32 == NULL || dtype_float64 == NULL) {
        goto error;
    }
    dec_init_taps();
    dec_select_variant();
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) {
        goto error;
    }
    PyObject *decimator = PyType_FromSpec(&Decimator_spec);
    if (decimator != NULL && add_steal(decimator, "delay", PyLong_FromLong(DEC_D)) < 0) {
        Py_CLEAR(decimator);
    }
    if (add_steal(module, "Decimator", decimator) < 0 ||
        add_steal(module, "FULL_SCALE", PyFloat_FromDouble(FULL_SCALE)) < 0 ||
        add_steal(module, "LEVEL_FLOOR_DBFS", PyFloat_FromDouble(LEVEL_FLOOR_DBFS)) < 0 ||
        add_steal(module, "_DECIMATOR_VARIANT", PyUnicode_FromString(dec_variant)) < 0) {
        Py_DECREF(module);
        goto error;
    }
    return module;
error:
    Py_CLEAR(numpy_empty);
    Py_CLEAR(dtype_int16);
    Py_CLEAR(dtype_float32);
    Py_CLEAR(dtype_float64);
    return NULL;
}
