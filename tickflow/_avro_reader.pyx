# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A compiled Avro binary reader for the consumers' hot paths (the processors' agents).

It reads a record written with the very schema it was planned from (the codec checks that the
writer's schema is ours before using it; any other writer schema goes through fastavro's
schema resolution) and returns the fields as a tuple in schema order, with no dict and no
``Decimal``:

- string -> ``str``, bytes -> ``bytes``, int/long -> ``int``, boolean -> ``bool``;
- enum -> its symbol (``str``);
- decimal -> its *unscaled* integer (the value times 10**scale, exactly what is on the wire):
  a book keyed by price then hashes a small int, not a fresh ``Decimal`` (1 µs each);
- record -> a tuple of its fields; array of records -> a list of such tuples;
- a null branch -> ``None``.

The plan is the compiled writer's (``avro_plan.build_plan``), so the two always agree on the
shapes handled; bytes that do not parse raise ``MalformedRecord`` with the field's path.
"""

from cpython.bytes cimport PyBytes_AsStringAndSize, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_FromLongLong
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t

from tickflow.errors import MalformedPayload


cdef extern from "Python.h":
    object _PyLong_FromByteArray(const unsigned char* bytes, size_t n, int little_endian, int is_signed)


include "_avro_kinds.pxi"


class MalformedRecord(MalformedPayload):
    """Bytes that are not a record of the reader's schema; the message names the field."""


include "_avro_wire.pxi"


cdef object _decimal(_Cursor* c):
    """The unscaled integer of an Avro decimal: big-endian two's complement."""
    cdef Py_ssize_t n = _length(c)
    cdef Py_ssize_t i
    cdef int64_t small
    cdef const unsigned char* p = c.data + c.pos
    c.pos += n
    if n == 0:
        return 0
    if n <= 8:  # the common case (a size; a price up to about 9.2: 10**18 scaled), no big int
        small = -1 if p[0] & 0x80 else 0
        for i in range(n):
            small = (small << 8) | p[i]
        return PyLong_FromLongLong(small)
    return _PyLong_FromByteArray(p, n, 0, 1)


cdef class Reader:
    """Reads records of one schema: ``reader(payload, start) -> tuple`` of its fields."""

    cdef readonly object plan
    cdef Py_ssize_t count
    cdef tuple kinds
    cdef tuple nullable
    #: Per field: the enum's symbols by index (ENUM), the nested ``Reader`` (ARRAY, RECORD).
    cdef tuple args
    cdef tuple names
    cdef str name

    def __init__(self, plan):
        self.plan = plan
        self.name = plan.record_name
        self.names = plan.names
        self.kinds = plan.kinds
        self.nullable = plan.nullable
        self.count = len(plan.names)
        args = []
        for kind, arg in zip(plan.kinds, plan.args):
            if kind == K_ENUM:
                args.append(_enum_symbols(arg))
            elif kind == K_ARRAY or kind == K_RECORD:
                args.append(Reader(arg))
            else:
                args.append(arg)
        self.args = tuple(args)

    def __call__(self, bytes payload, Py_ssize_t start=0):
        """The record in ``payload[start:]``, which must end exactly where the record does."""
        cdef _Cursor c
        _open(&c, payload, start)
        record = self._record(&c, self.name)
        if c.pos != c.end:
            raise MalformedRecord(f"{c.end - c.pos} bytes after the end of the {self.name} record")
        return record

    cdef tuple _record(self, _Cursor* c, str path):
        cdef Py_ssize_t i = 0
        cdef int64_t branch
        cdef list values = [None] * self.count
        try:
            while i < self.count:
                if self.nullable[i]:
                    branch = _long(c)
                    if branch == 0:
                        i += 1
                        continue
                    if branch != 1:
                        raise MalformedRecord(f"union branch {branch} (the schema has 2)")
                values[i] = self._value(c, <int>self.kinds[i], self.args[i], path, i)
                i += 1
        except MalformedRecord as exc:
            if str(exc).startswith(path):  # from a nested record: already names its field
                raise
            raise MalformedRecord(f"{path}.{self.names[i]}: {exc}") from None
        except UnicodeDecodeError:
            raise MalformedRecord(f"{path}.{self.names[i]}: a string that is not UTF-8") from None
        return tuple(values)

    cdef object _value(self, _Cursor* c, int kind, object arg, str path, Py_ssize_t i):
        cdef Py_ssize_t n
        cdef int64_t index, count
        cdef Reader items
        cdef list out
        if kind == K_DECIMAL:
            return _decimal(c)
        if kind == K_LONG:
            return PyLong_FromLongLong(_long(c))
        if kind == K_STRING:
            n = _length(c)
            c.pos += n
            return PyUnicode_DecodeUTF8(<const char*>(c.data + c.pos - n), n, "strict")
        if kind == K_ENUM:
            index = _long(c)
            if not 0 <= index < len(<tuple>arg):
                raise MalformedRecord(f"enum index {index} (the schema has {len(<tuple>arg)} symbols)")
            return (<tuple>arg)[index]
        if kind == K_ARRAY:
            items = <Reader>arg
            out = []
            while True:
                count = _block(c)
                if count == 0:
                    return out
                for _ in range(count):
                    out.append(items._record(c, f"{path}.{self.names[i]}[]"))
        if kind == K_RECORD:
            return (<Reader>arg)._record(c, f"{path}.{self.names[i]}")
        if kind == K_BOOLEAN:
            if c.pos >= c.end:
                raise MalformedRecord("truncated boolean")
            c.pos += 1
            if c.data[c.pos - 1] > 1:
                raise MalformedRecord(f"boolean byte {c.data[c.pos - 1]}")
            return c.data[c.pos - 1] == 1
        if kind == K_BYTES:
            n = _length(c)
            c.pos += n
            return PyBytes_FromStringAndSize(<const char*>(c.data + c.pos - n), n)
        raise MalformedRecord(f"unsupported field kind {kind}")
