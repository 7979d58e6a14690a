# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The producers' hot path, compiled: an Avro binary writer for tickflow events, and a sender
that encodes, keys and enqueues an event to Kafka in one C-level call.

A *plan* (built in ``tickflow/avro_plan.py`` from an event type's Avro schema) lists, per
field, the attribute to read and how to write it. Writing an event walks the plan, reads the
struct's attributes directly (no intermediate dict) and appends Avro binary to one growing C
buffer. Output is byte for byte what ``fastavro.schemaless_writer`` writes for the same record
(a test checks every event type), so this only changes speed, never the wire format.
"""

from cpython.bytes cimport PyBytes_AsStringAndSize, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from decimal import Decimal as _Decimal

from msgspec.structs import astuple as _astuple

from confluent_kafka import KafkaException

from tickflow.errors import KafkaError, RecordMismatch

# Field kinds; avro_plan.py uses the same numbers.
DEF K_STRING = 1
DEF K_BYTES = 2
DEF K_LONG = 3
DEF K_BOOLEAN = 4
DEF K_ENUM = 5
DEF K_DECIMAL = 6
DEF K_ARRAY = 7
DEF K_RECORD = 8

KIND_STRING = K_STRING
KIND_BYTES = K_BYTES
KIND_LONG = K_LONG
KIND_BOOLEAN = K_BOOLEAN
KIND_ENUM = K_ENUM
KIND_DECIMAL = K_DECIMAL
KIND_ARRAY = K_ARRAY
KIND_RECORD = K_RECORD


class FieldError(RecordMismatch):
    """A value that does not fit its field; the message names the field path."""


cdef class _Buffer:
    cdef char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity

    def __cinit__(self, Py_ssize_t capacity):
        self.data = <char*>PyMem_Malloc(capacity)
        if self.data == NULL:
            raise MemoryError()
        self.size = 0
        self.capacity = capacity

    def __dealloc__(self):
        PyMem_Free(self.data)

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t wanted = self.size + extra
        cdef char* grown
        if wanted <= self.capacity:
            return 0
        while self.capacity < wanted:
            self.capacity *= 2
        grown = <char*>PyMem_Realloc(self.data, self.capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        return 0

    cdef inline int write(self, const char* src, Py_ssize_t n) except -1:
        self.reserve(n)
        memcpy(self.data + self.size, src, n)
        self.size += n
        return 0

    cdef inline int write_long(self, int64_t value) except -1:
        cdef uint64_t n = (<uint64_t>value << 1) ^ <uint64_t>(value >> 63)
        self.reserve(10)
        while n >= 0x80:
            self.data[self.size] = <char>((n & 0x7F) | 0x80)
            self.size += 1
            n >>= 7
        self.data[self.size] = <char>n
        self.size += 1
        return 0


cdef class Plan:
    """How to write one record type: parallel lists, one entry per Avro field, in order."""

    cdef readonly tuple names
    cdef readonly tuple kinds
    cdef readonly tuple nullable
    #: Per field: enum symbol -> index (ENUM), 10**scale and 10**precision (DECIMAL),
    #: the item Plan (ARRAY of records) or the Plan (RECORD); else None.
    cdef readonly tuple args
    cdef readonly str record_name
    #: The msgspec struct type the plan was made for, and where each Avro field sits in
    #: ``msgspec.structs.astuple`` of it: one C call instead of an attribute lookup per field.
    cdef readonly object struct_type
    cdef readonly tuple positions
    # The same, as C arrays for the write loop.
    cdef Py_ssize_t count
    cdef int* c_kinds
    cdef bint* c_nullable
    cdef Py_ssize_t* c_positions

    def __init__(self, str record_name, list fields, object struct_type=None, tuple positions=None):
        cdef Py_ssize_t i
        self.record_name = record_name
        self.names = tuple(f[0] for f in fields)
        self.kinds = tuple(f[1] for f in fields)
        self.nullable = tuple(f[2] for f in fields)
        self.args = tuple(f[3] for f in fields)
        self.struct_type = struct_type
        self.positions = positions
        self.count = len(fields)
        self.c_kinds = <int*>PyMem_Malloc(max(self.count, 1) * sizeof(int))
        self.c_nullable = <bint*>PyMem_Malloc(max(self.count, 1) * sizeof(bint))
        self.c_positions = <Py_ssize_t*>PyMem_Malloc(max(self.count, 1) * sizeof(Py_ssize_t))
        if self.c_kinds == NULL or self.c_nullable == NULL or self.c_positions == NULL:
            raise MemoryError()
        for i in range(self.count):
            self.c_kinds[i] = self.kinds[i]
            self.c_nullable[i] = self.nullable[i]
            self.c_positions[i] = positions[i] if positions is not None else -1

    def __dealloc__(self):
        PyMem_Free(self.c_kinds)
        PyMem_Free(self.c_nullable)
        PyMem_Free(self.c_positions)


cdef extern from *:
    # 128-bit integers (GCC/Clang): 38 decimal digits fit below 2**127.
    ctypedef unsigned long long u128 "unsigned __int128"
    int __builtin_clzll(unsigned long long) nogil


cdef u128 _POW10[39]
_POW10[0] = 1
for _k in range(1, 39):
    _POW10[_k] = _POW10[_k - 1] * 10
cdef u128 _TEN38 = _POW10[38]


cdef extern from *:
    """
    /* The layout of CPython's C Decimal (Modules/_decimal: PyDecObject holding a libmpdec
       mpd_t). Read only after a self-check at import proves it matches (see _struct_layout_ok). */
    typedef struct { uint8_t flags; Py_ssize_t exp; Py_ssize_t digits; Py_ssize_t len;
                     Py_ssize_t alloc; uint64_t *data; } tf_mpd_t;
    typedef struct { PyObject_HEAD Py_hash_t hash; tf_mpd_t dec; } tf_dec_object;
    """
    ctypedef struct tf_mpd_t:
        unsigned char flags
        Py_ssize_t exp
        Py_ssize_t len
        uint64_t* data
    ctypedef struct tf_dec_object:
        tf_mpd_t dec


cdef u128 _RADIX = 10000000000000000000ULL  # libmpdec's base on 64-bit machines: 10**19
cdef bint _read_struct = False  # set at import by _struct_layout_ok()


cdef int _parts_from_struct(object value, u128* coef, long* exponent, bint* negative) except -1:
    """Coefficient, exponent and sign read straight from the Decimal (no text round trip)."""
    cdef tf_mpd_t* d = &(<tf_dec_object*>value).dec
    if d.flags & 0x0E:  # MPD_INF | MPD_NAN | MPD_SNAN
        raise ValueError(f"{value} is not a finite number")
    negative[0] = d.flags & 1
    if d.len == 1:
        coef[0] = d.data[0]
    elif d.len == 2:
        coef[0] = <u128>d.data[1] * _RADIX + d.data[0]
    else:  # 3 words or more: 39 digits or more
        raise ValueError(f"{value} has more digits than any schema's precision")
    if coef[0] >= _TEN38:
        raise ValueError(f"{value} has more digits than any schema's precision")
    if not -100000 < d.exp < 100000:
        raise ValueError(f"{value} has an unusable exponent")
    exponent[0] = d.exp
    return 0


cdef int _parts_from_text(object value, u128* coef, long* exponent, bint* negative) except -1:
    """Coefficient, exponent and sign parsed from the Decimal's text (any Decimal type)."""
    cdef const char* text
    cdef Py_ssize_t n, i = 0
    cdef bint point = False, exp_negative = False
    cdef long digits_after_point = 0, exp_value = 0
    cdef char c
    text = PyUnicode_AsUTF8AndSize(str(value), &n)
    negative[0] = False
    coef[0] = 0
    if n and text[0] == 45:  # '-'
        negative[0] = True
        i = 1
    if i >= n or not (48 <= text[i] <= 57):
        raise ValueError(f"{value} is not a finite number")
    while i < n:
        c = text[i]
        if 48 <= c <= 57:
            if coef[0] >= _TEN38:
                raise ValueError(f"{value} has more digits than any schema's precision")
            coef[0] = coef[0] * 10 + (c - 48)
            if point:
                digits_after_point += 1
        elif c == 46:  # '.'
            point = True
        elif c == 69 or c == 101:  # 'E' / 'e'
            i += 1
            if i < n and (text[i] == 43 or text[i] == 45):
                exp_negative = text[i] == 45
                i += 1
            while i < n:
                if not (48 <= text[i] <= 57) or exp_value > 100000:
                    raise ValueError(f"{value} has an unusable exponent")
                exp_value = exp_value * 10 + (text[i] - 48)
                i += 1
            break
        else:
            raise ValueError(f"{value} is not a finite number")
        i += 1
    if coef[0] >= _TEN38:
        raise ValueError(f"{value} has more digits than any schema's precision")
    exponent[0] = (-exp_value if exp_negative else exp_value) - digits_after_point
    return 0


def _struct_layout_ok():
    """True if reading Decimals' structs gives exactly what parsing their text gives."""
    import decimal
    cdef u128 c1, c2
    cdef long e1, e2
    cdef bint n1, n2
    if not hasattr(decimal, "__libmpdec_version__") or decimal.MAX_PREC != 999999999999999999:
        return False  # not the C implementation, or not its 64-bit build
    samples = ["0", "-0", "1", "-1", "65000.01", "0.00120000", "1E-8", "1.2E+5", "-128", "0E-8",
               "9999999999999999999", "10000000000000000000", "12345678901234567890123.456789",
               "99999999999999999999.999999999999999999", "-0.000000000000000001", "1e20", "-98765.4321"]
    for text in samples:
        value = _Decimal(text)
        if type(value) is not _Decimal:
            return False
        _parts_from_struct(value, &c1, &e1, &n1)
        _parts_from_text(value, &c2, &e2, &n2)
        if c1 != c2 or e1 != e2 or n1 != n2:
            return False
    return True


_read_struct = _struct_layout_ok()
#: Whether Decimals are read from their struct (fast) or their text (any implementation).
DECIMAL_READER = "struct" if _read_struct else "text"


cdef int _write_decimal(_Buffer buf, object value, int scale, int precision) except -1:
    """Avro bytes-decimal of ``value`` at ``scale``: exact, or ValueError; never rounded.

    The coefficient goes into a 128-bit integer, read from the C Decimal's struct where the
    import-time self-check proved that reads right, else parsed from its text; both are
    several times faster than scaling and converting Decimal objects. The bytes equal
    fastavro's: two's complement, big-endian, (bit_length + 8) // 8 bytes.
    """
    cdef u128 coef
    cdef u128 limit = _POW10[precision]
    cdef long exponent
    cdef bint negative
    cdef int shift, bits, size, k
    cdef uint64_t high, low
    cdef unsigned char out[17]
    if type(value) is _Decimal and _read_struct:
        _parts_from_struct(value, &coef, &exponent, &negative)
    elif isinstance(value, _Decimal):
        _parts_from_text(value, &coef, &exponent, &negative)
    else:
        raise TypeError(f"expected Decimal, got {type(value).__name__}")
    shift = exponent + scale if coef else 0  # zero is zero at any exponent
    while shift < 0:  # more fractional digits than the scale: fine only if they are zeros
        if coef % 10:
            raise ValueError(f"{value} has more fractional digits than the schema's scale {scale}")
        coef //= 10
        shift += 1
    if shift > 0:
        if shift > precision or coef >= _POW10[precision - shift]:
            raise ValueError(f"{value} has more digits than the schema's precision {precision}")
        coef *= _POW10[shift]
    elif coef >= limit:
        raise ValueError(f"{value} has more digits than the schema's precision {precision}")
    high = <uint64_t>(coef >> 64)
    low = <uint64_t>coef
    if high:
        bits = 128 - __builtin_clzll(high)
    elif low:
        bits = 64 - __builtin_clzll(low)
    else:
        bits = 0
    size = (bits + 8) // 8
    if negative:
        coef = (<u128>0) - coef
    for k in range(size):
        out[size - 1 - k] = <unsigned char>(coef & 0xFF)
        coef >>= 8
    buf.write_long(size)
    buf.write(<char*>out, size)
    return 0


cdef int _write_value(_Buffer buf, object value, int kind, object arg, str where) except -1:
    """Write one non-null value; ``where`` (the field's path) is only used for nested records."""
    cdef const char* text
    cdef char* raw
    cdef Py_ssize_t n
    cdef Plan item_plan
    if kind == K_STRING:
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        text = PyUnicode_AsUTF8AndSize(value, &n)
        buf.write_long(n)
        buf.write(text, n)
    elif kind == K_LONG:
        if type(value) is bool or not isinstance(value, int):
            raise TypeError(f"expected int, got {type(value).__name__}")
        buf.write_long(value)
    elif kind == K_DECIMAL:
        _write_decimal(buf, value, arg[0], arg[1])
    elif kind == K_ENUM:
        try:
            buf.write_long(arg[value])
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not one of {sorted(arg)}") from None
    elif kind == K_BOOLEAN:
        if value is True:
            buf.write(b"\x01", 1)
        elif value is False:
            buf.write(b"\x00", 1)
        else:
            raise TypeError(f"expected bool, got {type(value).__name__}")
    elif kind == K_BYTES:
        if not isinstance(value, bytes):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        PyBytes_AsStringAndSize(value, &raw, &n)
        buf.write_long(n)
        buf.write(raw, n)
    elif kind == K_ARRAY:
        item_plan = <Plan>arg
        n = len(value)
        if n:
            buf.write_long(n)
            for item in value:
                _write_record(buf, item, item_plan, where)
        buf.write_long(0)
    elif kind == K_RECORD:
        _write_record(buf, value, <Plan>arg, where)
    else:
        raise TypeError(f"unsupported field kind {kind}")
    return 0


cdef int _write_record(_Buffer buf, object record, Plan plan, str path, tuple values=None) except -1:
    """Write ``record``; ``values`` is its ``astuple`` when the caller already has it."""
    cdef Py_ssize_t i = 0
    cdef int kind
    cdef object value
    if values is None and plan.positions is not None and type(record) is plan.struct_type:
        values = _astuple(record)
    try:
        while i < plan.count:
            if values is not None:
                value = values[plan.c_positions[i]]
            else:
                value = getattr(record, plan.names[i])
            if plan.c_nullable[i]:
                if value is None:
                    buf.write(b"\x00", 1)
                    i += 1
                    continue
                buf.write(b"\x02", 1)
            elif value is None:
                raise ValueError("None in a field that is not nullable")
            kind = plan.c_kinds[i]
            _write_value(buf, value, kind, plan.args[i], f"{path}.{plan.names[i]}" if kind >= K_ARRAY else path)
            i += 1
    except RecordMismatch:  # from a nested record: already names its field
        raise
    except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise FieldError(f"{path}.{plan.names[i]}: {exc}") from None
    return 0


# One buffer for every call: the writer holds the GIL throughout and never re-enters itself.
cdef _Buffer _shared = _Buffer(4096)


cdef bytes _write(bytes header, object record, Plan plan, tuple values):
    cdef char* raw
    cdef Py_ssize_t n
    _shared.size = 0
    PyBytes_AsStringAndSize(header, &raw, &n)
    _shared.write(raw, n)
    _write_record(_shared, record, plan, plan.record_name, values)
    return PyBytes_FromStringAndSize(_shared.data, _shared.size)


cdef class Encoder:
    """Encodes one event type for one topic: ``encoder(event) -> bytes``, and
    ``encoder.keyed(event) -> (key, bytes)`` with the key built from the same field read."""

    cdef readonly bytes header
    cdef readonly Plan plan
    #: Positions (in ``astuple``) of the fields whose values, joined by ":", are the key.
    cdef readonly tuple key_positions

    def __init__(self, bytes header, Plan plan, tuple key_positions=None):
        self.header = header
        self.plan = plan
        self.key_positions = key_positions

    def __call__(self, record):
        return _write(self.header, record, self.plan, None)

    def keyed(self, record):
        return self._keyed(record)

    cdef tuple _keyed(self, object record):
        cdef tuple values
        cdef bytes value
        if self.key_positions is None or type(record) is not self.plan.struct_type:
            return record.key, _write(self.header, record, self.plan, None)
        values = _astuple(record)
        value = _write(self.header, record, self.plan, values)  # first: it type-checks the fields
        return self._key(values), value

    cdef object _key(self, tuple values):
        cdef Py_ssize_t count = len(self.key_positions)
        if count == 1:
            return values[<Py_ssize_t>self.key_positions[0]]
        if count == 2:
            return (<str>values[<Py_ssize_t>self.key_positions[0]]) + ":" + (<str>values[<Py_ssize_t>self.key_positions[1]])
        return ":".join([values[<Py_ssize_t>p] for p in self.key_positions])


cdef class Sender:
    """``sender(event)``: encode, key and enqueue one event to one topic (``EventProducer.sender``).

    ``produce`` is a bound ``confluent_kafka.Producer.produce``; ``on_full(topic, value, key)``
    is called when its buffer is full (back-pressure), ``poll(0)`` every 1000 records so that
    failure reports and client errors are served.
    """

    cdef Encoder encoder
    cdef object topic
    cdef object produce
    cdef object poll
    cdef object on_full
    cdef readonly long long sent

    def __init__(self, Encoder encoder, str topic, object produce, object poll, object on_full):
        self.encoder = encoder
        self.topic = topic
        self.produce = produce
        self.poll = poll
        self.on_full = on_full
        self.sent = 0

    def __call__(self, record):
        cdef tuple keyed = self.encoder._keyed(record)
        try:
            self.produce(self.topic, keyed[1], keyed[0])
        except BufferError:
            self.on_full(self.topic, keyed[1], keyed[0], None)
        except KafkaException as exc:
            raise KafkaError(f"cannot produce to {self.topic}: {exc.args[0].str()}") from exc
        self.sent += 1
        if self.sent % 1000 == 0:
            self.poll(0)

    cpdef send(self, object record):
        """The same as calling the sender."""
        self(record)


cdef class SendDispatch:
    """``EventProducer.send(topic, event, key=None, timestamp_ms=None)`` in C: finds (or makes)
    the sender of the event's topic and type and calls it; an explicit key or timestamp goes to
    ``slow(topic, event, key, timestamp_ms)``."""

    cdef dict senders
    cdef object make
    cdef object slow

    def __init__(self, dict senders, object make, object slow):
        self.senders = senders
        self.make = make
        self.slow = slow

    def __call__(self, topic, event, key=None, timestamp_ms=None):
        if key is not None or timestamp_ms is not None:
            return self.slow(topic, event, key, timestamp_ms)
        sender = self.senders.get((topic, type(event)))
        if sender is None:
            sender = self.make(topic, type(event))
        if type(sender) is Sender:
            (<Sender>sender).send(event)
        else:
            sender(event)
