# Reading Avro's binary format (a cursor over the bytes, zig-zag varints and lengths), shared by
# the compiled readers (tickflow/_avro_reader.pyx, _avro_columns.pyx), which define or import
# ``MalformedRecord`` before including this.
from cpython.bytes cimport PyBytes_AsStringAndSize
from libc.stdint cimport int64_t, uint64_t


cdef struct _Cursor:
    const unsigned char* data
    Py_ssize_t pos
    Py_ssize_t end


cdef inline int _open(_Cursor* c, bytes payload, Py_ssize_t start) except -1:
    """``c`` over ``payload``, from ``start`` to its end."""
    cdef char* raw
    cdef Py_ssize_t n
    PyBytes_AsStringAndSize(payload, &raw, &n)
    if start < 0 or start > n:
        raise MalformedRecord(f"start {start} outside a payload of {n} bytes")
    c.data = <const unsigned char*>raw
    c.pos = start
    c.end = n
    return 0


cdef inline int64_t _long(_Cursor* c) except? -1:
    cdef uint64_t n = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if c.pos >= c.end:
            raise MalformedRecord("truncated varint")
        b = c.data[c.pos]
        c.pos += 1
        n |= <uint64_t>(b & 0x7F) << shift
        if not (b & 0x80):
            break
        shift += 7
        if shift > 63:
            raise MalformedRecord("varint longer than 10 bytes")
    return <int64_t>(n >> 1) ^ -<int64_t>(n & 1)


cdef inline Py_ssize_t _length(_Cursor* c) except -1:
    cdef int64_t n = _long(c)
    if n < 0 or n > c.end - c.pos:
        raise MalformedRecord(f"length {n} runs past the end ({c.end - c.pos} bytes left)")
    return <Py_ssize_t>n


cdef inline int64_t _block(_Cursor* c) except? -1:
    """The item count of an array's next block (0: the array ends there)."""
    cdef int64_t count = _long(c)
    if count < 0:  # a block with its size in bytes: the items follow as usual
        count = -count
        _long(c)
    if count > c.end - c.pos:  # each item takes at least a byte: a corrupt count
        raise MalformedRecord(f"array block of {count} items in {c.end - c.pos} bytes")
    return count


cdef tuple _enum_symbols(dict index_of):
    """An enum's symbols by index, from the plan's symbol -> index."""
    cdef list symbols = [None] * len(index_of)
    for symbol, index in index_of.items():
        symbols[index] = symbol
    return tuple(symbols)
