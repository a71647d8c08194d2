/* Ids packed in the fewest bits, end to end: the optional C path of ``shared.blobs.bitpack.pack_bits``.

   The numpy path builds each group of eight ids in 64-bit words, about twenty array operations per call,
   which cost more than the compression of the blob for a window's labels (bench/codec.py). Here one pass
   over the values feeds a 64-bit accumulator and writes whole bytes; the GIL is released meanwhile. The
   bytes are the same as the numpy path's (tests/shared/blobs/test_labels.py checks both against a
   bit-by-bit reference). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* pack_bits(values, bits) -> bytes: values a C-contiguous buffer of uint64 (8 bytes each); each value's
   low ``bits`` bits (1..32), least significant first, end to end; the last byte zero-padded. */
static PyObject *pack_bits(PyObject *self, PyObject *args) {
    Py_buffer src;
    int bits;
    if (!PyArg_ParseTuple(args, "y*i", &src, &bits)) {
        return NULL;
    }
    if (bits < 1 || bits > 32 || src.len % 8 != 0) {
        PyBuffer_Release(&src);
        PyErr_SetString(PyExc_ValueError, "pack_bits: bits must be 1..32 and the buffer whole uint64 values");
        return NULL;
    }
    const Py_ssize_t n = src.len / 8;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (n * bits + 7) / 8);
    if (out == NULL) {
        PyBuffer_Release(&src);
        return NULL;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *in = (const unsigned char *)src.buf; /* native-endian uint64 values */
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    Py_BEGIN_ALLOW_THREADS
    uint64_t acc = 0; /* bits not yet written, lowest first; fewer than 8 between values */
    int held = 0;
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, in + 8 * i, 8); /* the buffer may not be aligned */
        acc |= (v & mask) << held; /* held + bits <= 39: fits */
        held += bits;
        while (held >= 8) {
            dst[o++] = (unsigned char)acc;
            acc >>= 8;
            held -= 8;
        }
    }
    if (held > 0) {
        dst[o] = (unsigned char)acc;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    return out;
}

static PyMethodDef methods[] = {
    {"pack_bits", pack_bits, METH_VARARGS,
     "pack_bits(values, bits): bytes of each uint64 value's low bits (1..32), least significant first, end to "
     "end, the last byte zero-padded."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bitpack", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bitpack(void) { return PyModule_Create(&module); }
