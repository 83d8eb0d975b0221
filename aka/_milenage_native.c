/* Native Milenage kernel (TS 35.206 §4.1) over OpenSSL's AES-128-ECB.
 *
 * Why: the AKA core's pure-Python path pays ~0.3 µs per interpreted operation on small VMs,
 * so a device-side AKA cannot reach a few µs there. This kernel fuses the Milenage glue
 * (XOR, rotations, constants) around OpenSSL's AES, which it does not re-implement.
 * K lives in the EVP context and OPc in this object; neither is ever returned or printed.
 * The pure-Python aka.milenage over a BlockCipher stays the reference and the path for TREs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;
    unsigned char opc[16];
    unsigned int r[5];
    unsigned char c[5][16];
    unsigned char last_rand[16];
    unsigned char last_temp[16];
    int has_last;
} Kernel;

static int aes(Kernel *self, const unsigned char *in, unsigned char *out, int nblocks) {
    int outl = 0;
    if (EVP_EncryptUpdate(self->ctx, out, &outl, in, 16 * nblocks) != 1 || outl != 16 * nblocks) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL AES-ECB failed");
        return -1;
    }
    return 0;
}

/* out = in rotated left by r bits, MSB first (TS 35.206 rot). */
static void rot128(const unsigned char in[16], unsigned int r, unsigned char out[16]) {
    unsigned int byte = (r / 8) % 16, bit = r % 8;
    for (int i = 0; i < 16; i++) {
        unsigned char a = in[(i + byte) % 16], b = in[(i + byte + 1) % 16];
        out[i] = bit ? (unsigned char)((a << bit) | (b >> (8 - bit))) : a;
    }
}

static int temp_of(Kernel *self, const unsigned char rand[16], unsigned char temp[16]) {
    if (self->has_last && CRYPTO_memcmp(rand, self->last_rand, 16) == 0) {
        memcpy(temp, self->last_temp, 16);
        return 0;
    }
    unsigned char x[16];
    for (int i = 0; i < 16; i++) x[i] = rand[i] ^ self->opc[i];
    if (aes(self, x, temp, 1) < 0) return -1;
    memcpy(self->last_rand, rand, 16);
    memcpy(self->last_temp, temp, 16);
    self->has_last = 1;
    return 0;
}

/* blocks[0..15] = OUT1 input (if with_out1), then OUT2..OUT5 inputs. */
static void inputs(Kernel *self, const unsigned char temp[16], const unsigned char *sqn,
                   const unsigned char *amf, unsigned char *blocks, int with_out1) {
    unsigned char x[16], rot[16];
    int k = 0;
    if (with_out1) {
        unsigned char in1[16];
        memcpy(in1, sqn, 6); memcpy(in1 + 6, amf, 2); memcpy(in1 + 8, sqn, 6); memcpy(in1 + 14, amf, 2);
        for (int i = 0; i < 16; i++) x[i] = in1[i] ^ self->opc[i];
        rot128(x, self->r[0], rot);
        for (int i = 0; i < 16; i++) blocks[i] = temp[i] ^ rot[i] ^ self->c[0][i];
        k = 1;
    }
    for (int i = 0; i < 16; i++) x[i] = temp[i] ^ self->opc[i];
    for (int j = 1; j < 5; j++, k++) {
        rot128(x, self->r[j], rot);
        for (int i = 0; i < 16; i++) blocks[16 * k + i] = rot[i] ^ self->c[j][i];
    }
}

static void xor_opc(Kernel *self, unsigned char *out, int nblocks) {
    for (int b = 0; b < nblocks; b++)
        for (int i = 0; i < 16; i++) out[16 * b + i] ^= self->opc[i];
}

static int get_buf(PyObject *obj, Py_ssize_t want, const char *name, const unsigned char **ptr) {
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes", name);
        return -1;
    }
    if (PyBytes_GET_SIZE(obj) != want) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, PyBytes_GET_SIZE(obj), want);
        return -1;
    }
    *ptr = (const unsigned char *)PyBytes_AS_STRING(obj);
    return 0;
}

static PyObject *bytes_(const unsigned char *p, Py_ssize_t n) {
    return PyBytes_FromStringAndSize((const char *)p, n);
}

/* out12345(rand, sqn, amf) -> 80 bytes OUT1..OUT5: two AES calls */
static PyObject *Kernel_out12345(Kernel *self, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *rand, *sqn, *amf;
    unsigned char temp[16], blocks[80], out[80];
    if (nargs != 3) { PyErr_SetString(PyExc_TypeError, "out12345(rand, sqn, amf)"); return NULL; }
    if (get_buf(args[0], 16, "RAND", &rand) < 0 || get_buf(args[1], 6, "SQN", &sqn) < 0 ||
        get_buf(args[2], 2, "AMF", &amf) < 0) return NULL;
    if (temp_of(self, rand, temp) < 0) return NULL;
    inputs(self, temp, sqn, amf, blocks, 1);
    if (aes(self, blocks, out, 5) < 0) return NULL;
    xor_opc(self, out, 5);
    PyObject *r = bytes_(out, 80);
    OPENSSL_cleanse(out, sizeof out);
    return r;
}

/* out2345(rand) -> 64 bytes OUT2..OUT5 */
static PyObject *Kernel_out2345(Kernel *self, PyObject *rand_obj) {
    const unsigned char *rand;
    unsigned char temp[16], blocks[64], out[64];
    if (get_buf(rand_obj, 16, "RAND", &rand) < 0) return NULL;
    if (temp_of(self, rand, temp) < 0) return NULL;
    inputs(self, temp, NULL, NULL, blocks, 0);
    if (aes(self, blocks, out, 4) < 0) return NULL;
    xor_opc(self, out, 4);
    PyObject *r = bytes_(out, 64);
    OPENSSL_cleanse(out, sizeof out);
    return r;
}

/* out1(rand, sqn, amf) -> 16 bytes */
static PyObject *Kernel_out1(Kernel *self, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *rand, *sqn, *amf;
    unsigned char temp[16], blocks[80], out[16];
    if (nargs != 3) { PyErr_SetString(PyExc_TypeError, "out1(rand, sqn, amf)"); return NULL; }
    if (get_buf(args[0], 16, "RAND", &rand) < 0 || get_buf(args[1], 6, "SQN", &sqn) < 0 ||
        get_buf(args[2], 2, "AMF", &amf) < 0) return NULL;
    if (temp_of(self, rand, temp) < 0) return NULL;
    inputs(self, temp, sqn, amf, blocks, 1);
    if (aes(self, blocks, out, 1) < 0) return NULL;
    xor_opc(self, out, 1);
    return bytes_(out, 16);
}

/* check_autn(rand, autn) -> (sqn, mac_ok, res, ck, ik, ak): the USIM's three AES calls.
 * MAC-A is compared in constant time. */
static PyObject *Kernel_check_autn(Kernel *self, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *rand, *autn;
    unsigned char temp[16], blocks[80], out[64], sqn[6], out1[16];
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "check_autn(rand, autn)"); return NULL; }
    if (get_buf(args[0], 16, "RAND", &rand) < 0 || get_buf(args[1], 16, "AUTN", &autn) < 0) return NULL;
    if (temp_of(self, rand, temp) < 0) return NULL;
    inputs(self, temp, NULL, NULL, blocks, 0);
    if (aes(self, blocks, out, 4) < 0) return NULL;
    xor_opc(self, out, 4);
    for (int i = 0; i < 6; i++) sqn[i] = autn[i] ^ out[i];
    inputs(self, temp, sqn, autn + 6, blocks, 1);
    if (aes(self, blocks, out1, 1) < 0) return NULL;
    xor_opc(self, out1, 1);
    int ok = CRYPTO_memcmp(out1, autn + 8, 8) == 0;
    PyObject *r = Py_BuildValue("(y#Oy#y#y#y#)", sqn, (Py_ssize_t)6, ok ? Py_True : Py_False,
                                out + 8, (Py_ssize_t)8, out + 16, (Py_ssize_t)16, out + 32,
                                (Py_ssize_t)16, out, (Py_ssize_t)6);
    OPENSSL_cleanse(out, sizeof out);
    return r;
}

/* vectors(rands, sqns, amf) -> [(rand, xres, ck, ik, autn), ...]: n vectors in two AES calls
 * (all TEMPs, then all OUT1..OUT5 blocks). rands is 16n bytes, sqns 6n bytes. */
static PyObject *Kernel_vectors(Kernel *self, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *amf;
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "vectors(rands: bytes, sqns: bytes, amf: bytes)");
        return NULL;
    }
    if (get_buf(args[2], 2, "AMF", &amf) < 0) return NULL;
    Py_ssize_t rl = PyBytes_GET_SIZE(args[0]), sl = PyBytes_GET_SIZE(args[1]);
    if (rl == 0 || rl % 16 || sl != rl / 16 * 6) {
        PyErr_SetString(PyExc_ValueError, "vectors: need 16 bytes of RAND and 6 of SQN per vector");
        return NULL;
    }
    Py_ssize_t n = rl / 16;
    const unsigned char *rands = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *sqns = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    unsigned char *buf = PyMem_Malloc((size_t)n * (16 + 16 + 80 + 80));
    if (!buf) return PyErr_NoMemory();
    unsigned char *x = buf, *temps = buf + 16 * n, *blocks = temps + 16 * n, *out = blocks + 80 * n;
    PyObject *list = NULL;
    for (Py_ssize_t v = 0; v < n; v++)
        for (int i = 0; i < 16; i++) x[16 * v + i] = rands[16 * v + i] ^ self->opc[i];
    if (aes(self, x, temps, (int)n) < 0) goto done;
    for (Py_ssize_t v = 0; v < n; v++) inputs(self, temps + 16 * v, sqns + 6 * v, amf, blocks + 80 * v, 1);
    if (aes(self, blocks, out, (int)(5 * n)) < 0) goto done;
    xor_opc(self, out, (int)(5 * n));
    list = PyList_New(n);
    if (!list) goto done;
    for (Py_ssize_t v = 0; v < n; v++) {
        const unsigned char *o = out + 80 * v, *sqn = sqns + 6 * v;
        unsigned char autn[16];
        for (int i = 0; i < 6; i++) autn[i] = sqn[i] ^ o[16 + i];
        memcpy(autn + 6, amf, 2);
        memcpy(autn + 8, o, 8);
        PyObject *t = Py_BuildValue("(y#y#y#y#y#)", rands + 16 * v, (Py_ssize_t)16, o + 24,
                                    (Py_ssize_t)8, o + 32, (Py_ssize_t)16, o + 48, (Py_ssize_t)16,
                                    autn, (Py_ssize_t)16);
        if (!t) { Py_CLEAR(list); goto done; }
        PyList_SET_ITEM(list, v, t);
    }
done:
    OPENSSL_cleanse(buf, (size_t)n * (16 + 16 + 80 + 80));
    PyMem_Free(buf);
    return list;
}

static int Kernel_init(Kernel *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"k", "opc", "r", "c", NULL};
    Py_buffer k, opc;
    PyObject *r_obj, *c_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*OO", kwlist, &k, &opc, &r_obj, &c_obj)) return -1;
    int rc = -1;
    if (k.len != 16 || opc.len != 16) {
        PyErr_SetString(PyExc_ValueError, "K and OPc must be 16 bytes");
        goto done;
    }
    for (int j = 0; j < 5; j++) {
        PyObject *rj = PySequence_GetItem(r_obj, j), *cj = PySequence_GetItem(c_obj, j);
        if (!rj || !cj) { Py_XDECREF(rj); Py_XDECREF(cj); goto done; }
        long rv = PyLong_AsLong(rj);
        int bad = PyErr_Occurred() ? 1 : 0;
        if (!bad) bad = _PyLong_AsByteArray((PyLongObject *)cj, self->c[j], 16, 0, 0) < 0;
        Py_DECREF(rj); Py_DECREF(cj);
        if (bad) goto done;
        self->r[j] = (unsigned int)(rv % 128);
    }
    memcpy(self->opc, opc.buf, 16);
    self->has_last = 0;
    if (!self->ctx) self->ctx = EVP_CIPHER_CTX_new();
    if (!self->ctx || EVP_EncryptInit_ex(self->ctx, EVP_aes_128_ecb(), NULL, k.buf, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL AES-128-ECB init failed");
        goto done;
    }
    EVP_CIPHER_CTX_set_padding(self->ctx, 0);
    rc = 0;
done:
    PyBuffer_Release(&k);
    PyBuffer_Release(&opc);
    return rc;
}

static void Kernel_dealloc(Kernel *self) {
    if (self->ctx) EVP_CIPHER_CTX_free(self->ctx);
    OPENSSL_cleanse(self->opc, sizeof self->opc);
    OPENSSL_cleanse(self->last_temp, sizeof self->last_temp);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Kernel_repr(Kernel *self) { return PyUnicode_FromString("<Milenage native kernel, K hidden>"); }

static PyMethodDef Kernel_methods[] = {
    {"out12345", (PyCFunction)(void (*)(void))Kernel_out12345, METH_FASTCALL, "OUT1..OUT5 (80 bytes), two AES calls"},
    {"out2345", (PyCFunction)Kernel_out2345, METH_O, "OUT2..OUT5 (64 bytes)"},
    {"out1", (PyCFunction)(void (*)(void))Kernel_out1, METH_FASTCALL, "OUT1 (16 bytes)"},
    {"vectors", (PyCFunction)(void (*)(void))Kernel_vectors, METH_FASTCALL,
     "[(rand, xres, ck, ik, autn)] for 16n bytes of RAND and 6n of SQN"},
    {"check_autn", (PyCFunction)(void (*)(void))Kernel_check_autn, METH_FASTCALL,
     "(sqn, mac_ok, res, ck, ik, ak) for a 16-byte AUTN"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aka._milenage_native.Kernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Milenage for one subscriber with K in an OpenSSL AES context",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Kernel_init,
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_repr = (reprfunc)Kernel_repr,
    .tp_methods = Kernel_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_milenage_native", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__milenage_native(void) {
    if (PyType_Ready(&KernelType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
