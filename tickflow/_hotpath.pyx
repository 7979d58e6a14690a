# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The producers' hot path, compiled: an Avro binary writer for tickflow events, and a sender
that encodes, keys and enqueues an event to Kafka in one C-level call.

A *plan* (built in ``tickflow/avro_plan.py`` from an event type's Avro schema) lists, per
field, the attribute to read and how to write it. Writing an event walks the plan, reads the
struct's attributes directly (no intermediate dict) and appends Avro binary to one growing C
buffer. Output is byte for byte what ``fastavro.schemaless_writer`` writes for the same record
(a test checks every event type), so this only changes speed, never the wire format.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.bytes cimport PyBytes_AsStringAndSize, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memmove

from decimal import Decimal as _Decimal

from msgspec.structs import astuple as _astuple

from confluent_kafka import KafkaException

from tickflow.errors import KafkaError, RecordMismatch

include "_avro_kinds.pxi"

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
    #: the item Plan (ARRAY of records; None: an array of strings) or the Plan (RECORD); else None.
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


cdef int _scaled(object value, int scale, int precision, u128* out, bint* negative) except -1:
    """The magnitude of ``value`` at ``scale`` (``value * 10**scale``, an integer below
    ``10**precision``) and its sign: exact, or ValueError; never rounded.

    The coefficient goes into a 128-bit integer, read from the C Decimal's struct where the
    import-time self-check proved that reads right, else parsed from its text; both are
    several times faster than scaling and converting Decimal objects.
    """
    cdef u128 coef
    cdef long exponent
    cdef int shift
    if type(value) is _Decimal and _read_struct:
        _parts_from_struct(value, &coef, &exponent, negative)
    elif isinstance(value, _Decimal):
        _parts_from_text(value, &coef, &exponent, negative)
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
    elif coef >= _POW10[precision]:
        raise ValueError(f"{value} has more digits than the schema's precision {precision}")
    out[0] = coef
    return 0


cdef int _write_scaled(_Buffer buf, u128 coef, bint negative) except -1:
    """Avro bytes-decimal of an unscaled magnitude and sign. The bytes equal fastavro's: two's
    complement, big-endian, (bit_length + 8) // 8 bytes."""
    cdef int bits, size, k
    cdef uint64_t high = <uint64_t>(coef >> 64)
    cdef uint64_t low = <uint64_t>coef
    cdef unsigned char out[17]
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


cdef int _write_decimal(_Buffer buf, object value, int scale, int precision) except -1:
    """Avro bytes-decimal of ``value`` at ``scale``: exact, or ValueError; never rounded."""
    cdef u128 coef
    cdef bint negative
    _scaled(value, scale, precision, &coef, &negative)
    _write_scaled(buf, coef, negative)
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
        n = len(value)
        if n:
            buf.write_long(n)
            if arg is None:  # an array of strings
                for item in value:
                    _write_value(buf, item, K_STRING, None, where)
            else:
                item_plan = <Plan>arg
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

    cdef readonly Encoder encoder
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

    cdef int send_raw(self, bytes key, bytes value) except -1:
        """Enqueue bytes this sender's encoder would have written (the compiled feed paths),
        with the same back-pressure, errors, counting and polling as an event."""
        try:
            self.produce(self.topic, value, key)
        except BufferError:
            self.on_full(self.topic, value, key, None)
        except KafkaException as exc:
            raise KafkaError(f"cannot produce to {self.topic}: {exc.args[0].str()}") from exc
        self.sent += 1
        if self.sent % 1000 == 0:
            self.poll(0)
        return 0


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


# --- Exact decimals from the venue's text ------------------------------------------------------

cdef extern from *:
    # Signed 128-bit integers (GCC/Clang) for book prices and sizes at scale 18: |v| < 10**38.
    ctypedef long long i128 "__int128"

#: The scale book prices and sizes are kept at: the contract's (decimal(38, 18)).
BOOK_SCALE = 18
cdef int _BOOK_SCALE = 18
cdef int _BOOK_PRECISION = 38


cdef bint _parse_plain(const char* text, Py_ssize_t n, u128* out, int* exponent) noexcept:
    """``digits`` or ``digits.digits`` with at most 18 fractional digits (how venues write
    prices and sizes) -> the value at scale 18, exactly, and the exponent ``Decimal(text)``
    would have (minus the number of fractional digits). False for anything else, or a value
    decimal(38, 18) cannot hold: the caller then leaves the frame to the generic path
    (``Decimal`` and the configured encoder), which decides. (More than 18 fractional digits,
    even zeros, are refused here because fastavro refuses them.)
    """
    cdef Py_ssize_t i = 0, frac = 0
    cdef u128 coef = 0
    cdef int shift
    cdef char c
    if n == 0 or not (48 <= text[0] <= 57):
        return False
    while i < n and 48 <= text[i] <= 57:
        if coef >= _POW10[37]:
            return False  # 39 digits or more
        coef = coef * 10 + (text[i] - 48)
        i += 1
    if i < n:
        if text[i] != 46 or i + 1 == n:  # only '.' followed by at least one digit
            return False
        i += 1
        while i < n:
            c = text[i]
            if not (48 <= c <= 57) or frac == _BOOK_SCALE or coef >= _POW10[37]:
                return False
            coef = coef * 10 + (c - 48)
            frac += 1
            i += 1
    exponent[0] = -<int>frac
    shift = _BOOK_SCALE - frac
    if coef >= _POW10[_BOOK_PRECISION - shift]:
        return False
    out[0] = coef * _POW10[shift]
    return True


cdef object _py_int(i128 value):
    """A Python int from a 128-bit one."""
    cdef bint negative = value < 0
    cdef u128 magnitude = <u128>(-value if negative else value)
    cdef object result = (<object>(<uint64_t>(magnitude >> 64)) << 64) | <object>(<uint64_t>magnitude)
    return -result if negative else result


# A book value's *spelling*: 2 * the exponent its Decimal had, plus 1 for a negative zero. The
# book keeps it next to the value so that its Decimals print as they came (the generic book
# keeps the Decimal objects themselves).


cdef object _book_decimal(i128 value, int spelling):
    """The ``Decimal`` a book value at scale 18 was applied as: same value, same exponent, so
    it prints the same (e.g. in a crossed book's reset detail)."""
    cdef bint negative_zero = spelling & 1
    cdef int exponent = (spelling - negative_zero) // 2
    cdef object magnitude = abs(_py_int(value))
    cdef object shift = _BOOK_SCALE + exponent  # a Python int: the powers below are exact
    coefficient = magnitude // 10**shift if shift >= 0 else magnitude * 10 ** (-shift)
    negative = value < 0 or negative_zero
    return _Decimal(f"{'-' if negative else ''}{coefficient}E{exponent}")


cdef i128 _book_value(object value, int* spelling) except? -1:
    """A generic level value (``Decimal``) at scale 18, exactly, or ValueError."""
    cdef u128 coef
    cdef bint negative
    if not isinstance(value, _Decimal):
        if type(value) is bool or not isinstance(value, (int, str)):
            raise TypeError(f"book prices and sizes are Decimals, not {type(value).__name__}")
        value = _Decimal(value)
    _scaled(value, _BOOK_SCALE, _BOOK_PRECISION, &coef, &negative)
    exponent = value.as_tuple().exponent
    if not -100000 < exponent < 100000:
        raise ValueError(f"{value} has an unusable exponent")
    spelling[0] = 2 * <int>exponent + (1 if negative and coef == 0 else 0)
    return -<i128>coef if negative else <i128>coef


def scaled_text(str text):
    """The value of a price or size as the venue writes it, at scale 18 (an int), or None when
    the compiled path would leave it to ``Decimal`` (for tests)."""
    cdef const char* raw
    cdef Py_ssize_t n
    cdef u128 coef
    cdef int exponent
    raw = PyUnicode_AsUTF8AndSize(text, &n)
    if not _parse_plain(raw, n, &coef, &exponent):
        return None
    return _py_int(<i128>coef)


cdef int _double(i128** keys, i128** sizes, int** spellings, Py_ssize_t capacity) except -1:
    """Doubles the three parallel arrays of a level store (two spellings per level); on failure
    the arrays grown so far stay valid, and the store keeps its old capacity."""
    cdef i128* grown = <i128*>PyMem_Realloc(keys[0], 2 * capacity * sizeof(i128))
    if grown == NULL:
        raise MemoryError()
    keys[0] = grown
    grown = <i128*>PyMem_Realloc(sizes[0], 2 * capacity * sizeof(i128))
    if grown == NULL:
        raise MemoryError()
    sizes[0] = grown
    cdef int* grown_spellings = <int*>PyMem_Realloc(spellings[0], 4 * capacity * sizeof(int))
    if grown_spellings == NULL:
        raise MemoryError()
    spellings[0] = grown_spellings
    return 0


cdef class _Levels:
    """Price levels at scale 18, in the order they came: a diff's side, parsed once."""

    cdef i128* prices
    cdef i128* sizes
    cdef int* spellings  # two per level: price, size
    cdef Py_ssize_t n
    cdef Py_ssize_t capacity

    def __cinit__(self):
        self.capacity = 64
        self.n = 0
        self.prices = <i128*>PyMem_Malloc(self.capacity * sizeof(i128))
        self.sizes = <i128*>PyMem_Malloc(self.capacity * sizeof(i128))
        self.spellings = <int*>PyMem_Malloc(2 * self.capacity * sizeof(int))
        if self.prices == NULL or self.sizes == NULL or self.spellings == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.prices)
        PyMem_Free(self.sizes)
        PyMem_Free(self.spellings)

    cdef int append(self, i128 price, i128 size, int price_spelling, int size_spelling) except -1:
        if self.n == self.capacity:
            _double(&self.prices, &self.sizes, &self.spellings, self.capacity)
            self.capacity *= 2
        self.prices[self.n] = price
        self.sizes[self.n] = size
        self.spellings[2 * self.n] = price_spelling
        self.spellings[2 * self.n + 1] = size_spelling
        self.n += 1
        return 0

    cdef int from_python(self, object levels) except -1:
        """(price, size) pairs of Decimals; all converted before any is used (ValueError)."""
        cdef int price_spelling, size_spelling
        cdef i128 price, size
        self.n = 0
        for py_price, py_size in levels:
            price = _book_value(py_price, &price_spelling)
            size = _book_value(py_size, &size_spelling)
            self.append(price, size, price_spelling, size_spelling)
        return 0

    cdef bint from_json(self, const unsigned char* p, Py_ssize_t n) except -1:
        """A JSON array of ``["price", "size"]`` string pairs. False (nothing to trust) for any
        other shape, escapes included: the generic path then decodes the frame."""
        cdef Py_ssize_t i = 0, start
        cdef u128 price, size
        cdef int k, price_exponent, size_exponent
        self.n = 0
        while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
            i += 1
        if i == n or p[i] != 91:  # '['
            return False
        i += 1
        while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
            i += 1
        if i < n and p[i] == 93:  # ']': no levels
            i += 1
        else:
            while True:
                while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
                    i += 1
                if i == n or p[i] != 91:
                    return False
                i += 1
                for k in range(2):
                    while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
                        i += 1
                    if i == n or p[i] != 34:  # '"'
                        return False
                    i += 1
                    start = i
                    while i < n and p[i] != 34:
                        i += 1
                    if i == n or not _parse_plain(<const char*>p + start, i - start, &price if k == 0 else &size,
                                                  &price_exponent if k == 0 else &size_exponent):
                        return False  # an escape (backslash) is not a digit: refused by the parser
                    i += 1
                    while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
                        i += 1
                    if i == n or p[i] != (44 if k == 0 else 93):  # ',' then ']'
                        return False
                    i += 1
                self.append(<i128>price, <i128>size, 2 * price_exponent, 2 * size_exponent)
                while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
                    i += 1
                if i == n:
                    return False
                if p[i] == 93:
                    i += 1
                    break
                if p[i] != 44:
                    return False
                i += 1
        while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
            i += 1
        return i == n


cdef bint _levels_from_raw(_Levels levels, object raw) except -1:
    cdef Py_buffer view
    cdef bint ok
    PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE)
    try:
        ok = levels.from_json(<const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return ok


# --- The order book, compiled -------------------------------------------------------------------


cdef class _BookSide:
    """One side of a book: levels in one array sorted by rank, the best level last.

    Prices and sizes are exact integers at scale 18. The rank is the price for bids and minus
    the price for asks, so the best level of either side is the last: updates near the top of
    the book (most of them) move few entries, a lookup is a binary search, and the best price
    is one read.
    """

    cdef i128* ranks
    cdef i128* sizes
    cdef int* spellings  # two per level: price (kept from when the level appeared), size
    cdef Py_ssize_t n
    cdef Py_ssize_t capacity
    cdef int sign

    def __cinit__(self, int sign):
        self.sign = sign
        self.n = 0
        self.capacity = 256
        self.ranks = <i128*>PyMem_Malloc(self.capacity * sizeof(i128))
        self.sizes = <i128*>PyMem_Malloc(self.capacity * sizeof(i128))
        self.spellings = <int*>PyMem_Malloc(2 * self.capacity * sizeof(int))
        if self.ranks == NULL or self.sizes == NULL or self.spellings == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.ranks)
        PyMem_Free(self.sizes)
        PyMem_Free(self.spellings)

    cdef Py_ssize_t _find(self, i128 rank) noexcept:
        cdef Py_ssize_t lo = 0, hi = self.n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.ranks[mid] < rank:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef int set(self, i128 price, i128 size, int price_spelling, int size_spelling) except -1:
        """The level at ``price`` now has ``size``; size 0 removes it. As with a dict, a level
        that exists keeps the price as it first came; its size is replaced."""
        cdef i128 rank = price if self.sign > 0 else -price
        cdef Py_ssize_t i = self._find(rank)
        cdef bint found = i < self.n and self.ranks[i] == rank
        if size != 0:
            if found:
                self.sizes[i] = size
                self.spellings[2 * i + 1] = size_spelling
                return 0
            if self.n == self.capacity:
                _double(&self.ranks, &self.sizes, &self.spellings, self.capacity)
                self.capacity *= 2
            memmove(self.ranks + i + 1, self.ranks + i, (self.n - i) * sizeof(i128))
            memmove(self.sizes + i + 1, self.sizes + i, (self.n - i) * sizeof(i128))
            memmove(self.spellings + 2 * i + 2, self.spellings + 2 * i, 2 * (self.n - i) * sizeof(int))
            self.ranks[i] = rank
            self.sizes[i] = size
            self.spellings[2 * i] = price_spelling
            self.spellings[2 * i + 1] = size_spelling
            self.n += 1
        elif found:
            memmove(self.ranks + i, self.ranks + i + 1, (self.n - i - 1) * sizeof(i128))
            memmove(self.sizes + i, self.sizes + i + 1, (self.n - i - 1) * sizeof(i128))
            memmove(self.spellings + 2 * i, self.spellings + 2 * i + 2, 2 * (self.n - i - 1) * sizeof(int))
            self.n -= 1
        return 0

    cdef int apply(self, _Levels levels) except -1:
        cdef Py_ssize_t k
        for k in range(levels.n):
            self.set(levels.prices[k], levels.sizes[k], levels.spellings[2 * k], levels.spellings[2 * k + 1])
        return 0

    cdef inline i128 best_price(self) noexcept:
        return self.ranks[self.n - 1] if self.sign > 0 else -self.ranks[self.n - 1]

    def best(self):
        cdef Py_ssize_t k = self.n - 1
        if self.n == 0:
            return None
        return _book_decimal(self.best_price(), self.spellings[2 * k]), _book_decimal(self.sizes[k],
                                                                                     self.spellings[2 * k + 1])

    def as_dict(self):
        cdef Py_ssize_t k
        return {
            _book_decimal(self.ranks[k] if self.sign > 0 else -self.ranks[k], self.spellings[2 * k]):
                _book_decimal(self.sizes[k], self.spellings[2 * k + 1])
            for k in range(self.n - 1, -1, -1)
        }

    def __len__(self):
        return self.n


cdef class Book:
    """``OrderBook`` compiled: the same methods, with prices and sizes held as exact integers at
    scale 18 (decimal(38, 18), the contract's decimals) instead of ``Decimal`` keys.

    Generic levels (``Decimal`` pairs) are converted exactly or refused with ValueError, all of
    a call's levels before any is applied; the compiled feed path applies levels parsed
    straight from the venue's text. ``bids``/``asks`` and the best levels come back as the
    ``Decimal``s that were applied (value and exponent kept: they print the same).
    """

    cdef _BookSide _bids
    cdef _BookSide _asks
    cdef _Levels _scratch_bids
    cdef _Levels _scratch_asks

    def __init__(self):
        self._bids = _BookSide(1)
        self._asks = _BookSide(-1)
        self._scratch_bids = _Levels()
        self._scratch_asks = _Levels()

    @property
    def bids(self):
        """Price -> size (a copy, best first)."""
        return self._bids.as_dict()

    @property
    def asks(self):
        return self._asks.as_dict()

    def clear(self):
        self._bids.n = 0
        self._asks.n = 0

    def apply(self, bids, asks):
        self._scratch_bids.from_python(bids)
        self._scratch_asks.from_python(asks)
        self._bids.apply(self._scratch_bids)
        self._asks.apply(self._scratch_asks)

    cdef int apply_levels(self, _Levels bids, _Levels asks) except -1:
        self._bids.apply(bids)
        self._asks.apply(asks)
        return 0

    def best_bid(self):
        return self._bids.best()

    def best_ask(self):
        return self._asks.best()

    cdef bint is_crossed(self) noexcept:
        return self._bids.n > 0 and self._asks.n > 0 and self._bids.best_price() >= self._asks.best_price()

    def crossed(self):
        return self.is_crossed()

    def depth(self):
        """(bid levels, ask levels)."""
        return self._bids.n, self._asks.n


# --- Binance frames, compiled ---------------------------------------------------------------------

# Layouts the compiled frame writers produce: (field name, kind, nullable) in schema order, and
# decimals must be decimal(38, 18). A contract that differs leaves those events to the generic
# path (build the event, encode it with its plan), so a schema change can never be written wrong.
_HEAD = (("venue", K_STRING, False), ("market", K_ENUM, False), ("symbol", K_STRING, False),
         ("venue_symbol", K_STRING, False))
LAYOUTS = {
    "tickflow.BookUpdate": _HEAD + (
        ("exchange_ts", K_LONG, True), ("receive_ts", K_LONG, False), ("kind", K_ENUM, False),
        ("bids", K_ARRAY, False), ("asks", K_ARRAY, False), ("first_update_id", K_LONG, True),
        ("last_update_id", K_LONG, True), ("prev_update_id", K_LONG, True), ("sequence", K_LONG, True),
        ("prev_sequence", K_LONG, True), ("checksum", K_LONG, True)),
    "tickflow.PriceLevel": (("price", K_DECIMAL, False), ("size", K_DECIMAL, False)),
    "tickflow.Trade": _HEAD + (
        ("exchange_ts", K_LONG, False), ("receive_ts", K_LONG, False), ("trade_id", K_STRING, False),
        ("price", K_DECIMAL, False), ("size", K_DECIMAL, False), ("side", K_ENUM, False)),
    "tickflow.BestBidOffer": _HEAD + (
        ("exchange_ts", K_LONG, True), ("receive_ts", K_LONG, False), ("bid_price", K_DECIMAL, False),
        ("bid_size", K_DECIMAL, False), ("ask_price", K_DECIMAL, False), ("ask_size", K_DECIMAL, False),
        ("update_id", K_LONG, True)),
}


def layout_matches(Plan plan):
    """True if the compiled frame writers write exactly ``plan``'s record (see ``LAYOUTS``)."""
    cdef Py_ssize_t i
    expected = LAYOUTS.get(plan.record_name)
    if expected is None or len(expected) != plan.count:
        return False
    for i in range(plan.count):
        if (plan.names[i], plan.kinds[i], plan.nullable[i]) != expected[i]:
            return False
        if plan.kinds[i] == K_DECIMAL and tuple(plan.args[i]) != (_BOOK_SCALE, _BOOK_PRECISION):
            return False
        if plan.kinds[i] == K_ARRAY and not layout_matches(plan.args[i]):
            return False
    return True


def avro_string(str value):
    """Avro binary of a string (for the pre-encoded static fields)."""
    cdef _Buffer buf = _Buffer(64)
    cdef const char* text
    cdef Py_ssize_t n
    text = PyUnicode_AsUTF8AndSize(value, &n)
    buf.write_long(n)
    buf.write(text, n)
    return PyBytes_FromStringAndSize(buf.data, buf.size)


def avro_long(int64_t value):
    cdef _Buffer buf = _Buffer(16)
    buf.write_long(value)
    return PyBytes_FromStringAndSize(buf.data, buf.size)


cdef class SymbolPath:
    """What the compiled path keeps per venue symbol: its Kafka key, the Avro of the fields
    every market event starts with (venue, market, symbol, venue symbol), and its book."""

    cdef readonly str venue_symbol
    cdef readonly bytes key
    cdef readonly bytes head
    #: The symbol's ``BookSync`` if its book is kept here with a compiled ``Book``, else None.
    cdef readonly object sync
    cdef Book book
    #: 1: Binance spot continuity (U = previous u + 1), 2: USD-M (pu = previous u), 0: none.
    cdef int rule

    def __init__(self, str venue_symbol, bytes key, bytes head, object sync, Book book, int rule):
        self.venue_symbol = venue_symbol
        self.key = key
        self.head = head
        self.sync = sync
        self.book = book
        self.rule = rule if sync is not None and book is not None else 0


# What a frame is, by the channel of its stream.
DEF F_DEPTH = 1
DEF F_AGG_TRADE = 2
DEF F_TRADE = 3
DEF F_TICKER = 4
FRAME_DEPTH = F_DEPTH
FRAME_AGG_TRADE = F_AGG_TRADE
FRAME_TRADE = F_TRADE
FRAME_TICKER = F_TICKER

cdef object _DECLINED = object()


cdef inline int _write_level_array(_Buffer buf, _Levels levels) except -1:
    cdef Py_ssize_t k
    cdef i128 v
    if levels.n:
        buf.write_long(levels.n)
        for k in range(levels.n):
            v = levels.prices[k]
            _write_scaled(buf, <u128>(-v if v < 0 else v), v < 0)
            v = levels.sizes[k]
            _write_scaled(buf, <u128>(-v if v < 0 else v), v < 0)
    buf.write_long(0)
    return 0


cdef inline bint _text_value(object text, u128* out) except -1:
    cdef const char* raw
    cdef Py_ssize_t n
    cdef int exponent
    if type(text) is not str:
        return False
    raw = PyUnicode_AsUTF8AndSize(text, &n)
    return _parse_plain(raw, n, out, &exponent)


cdef class BinanceFastPath:
    """``BinanceStream.on_frame`` for the steady state, compiled: depth diffs that continue a
    live book, aggregate/raw trades and book tickers go from the frame to Avro bytes on Kafka
    without ``Decimal``s or event structs; prices and sizes are parsed exactly from the venue's
    text, straight into the book and the writer.

    Everything else (a reply, a kline, a book not live or bridging, a duplicate, a gap, a value
    outside the strict ``digits[.digits]`` form, a malformed frame) is *declined* before anything
    is changed, and ``generic(frame, receive_ts)`` (the Python path) handles the frame, so the
    outcome of those cases is the generic code's by construction. Bytes, keys and book states
    equal the generic path's (tests compare both on recorded and random traffic).
    """

    cdef object generic
    cdef object counters
    cdef object envelope
    cdef object depth
    cdef object agg_trade
    cdef object trade
    cdef object ticker
    cdef tuple decode_errors
    cdef dict channels
    cdef object channel_kind
    cdef dict symbols
    cdef object make_symbol
    cdef object resolve
    cdef object live
    cdef object awaiting
    cdef object depth_diff
    cdef object on_crossed
    cdef Sender book_sender
    cdef Sender trade_sender
    cdef Sender ticker_sender
    cdef bint book_off
    cdef bint trade_off
    cdef bint ticker_off
    cdef bytes book_header
    cdef bytes trade_header
    cdef bytes ticker_header
    cdef int64_t delta_index
    cdef int64_t buy_index
    cdef int64_t sell_index
    cdef _Levels bids
    cdef _Levels asks
    #: Frames handled here (the rest went to the generic path).
    cdef readonly long long handled

    def __init__(self, *, generic, counters, decoders, decode_errors, channel_kind, make_symbol, resolve, live,
                 awaiting, depth_diff, on_crossed):
        self.generic = generic
        self.counters = counters
        self.envelope = decoders["envelope"]
        self.depth = decoders["depth"]
        self.agg_trade = decoders["aggTrade"]
        self.trade = decoders["trade"]
        self.ticker = decoders["bookTicker"]
        self.decode_errors = tuple(decode_errors)
        self.channels = {}
        self.channel_kind = channel_kind
        self.symbols = {}
        self.make_symbol = make_symbol
        self.resolve = resolve
        self.live = live
        self.awaiting = awaiting
        self.depth_diff = depth_diff
        self.on_crossed = on_crossed
        self.bids = _Levels()
        self.asks = _Levels()
        self.handled = 0

    def on_frame(self, frame, receive_ts):
        """``BinanceStream.on_frame``: the compiled path, else the generic one."""
        result = self._fast(frame, receive_ts)
        if result is _DECLINED:
            return self.generic(frame, receive_ts)
        return result

    cdef SymbolPath _symbol(self, object venue_symbol):
        path = self.symbols.get(venue_symbol)
        if path is None:
            path = self.make_symbol(venue_symbol)
            if len(self.symbols) < 100_000:  # bounded, whatever a venue sends
                self.symbols[venue_symbol] = path
        return <SymbolPath>path

    cdef bint _ready(self, int kind) except -1:
        """The sender of ``kind``'s events, resolved (and its schema registered) on first use,
        as the generic path does; False if its layout is not the compiled writers'."""
        if kind == F_DEPTH:
            if self.book_sender is None and not self.book_off:
                sender, header, indices = self.resolve(kind)
                self.book_off = sender is None
                if sender is not None:
                    self.book_header, self.delta_index = header, indices["DELTA"]
                    self.book_sender = sender
            return self.book_sender is not None
        if kind == F_TICKER:
            if self.ticker_sender is None and not self.ticker_off:
                sender, header, indices = self.resolve(kind)
                self.ticker_off = sender is None
                if sender is not None:
                    self.ticker_header = header
                    self.ticker_sender = sender
            return self.ticker_sender is not None
        if self.trade_sender is None and not self.trade_off:
            sender, header, indices = self.resolve(kind)
            self.trade_off = sender is None
            if sender is not None:
                self.trade_header, self.buy_index, self.sell_index = header, indices["BUY"], indices["SELL"]
                self.trade_sender = sender
        return self.trade_sender is not None

    cdef object _fast(self, object frame, object receive_ts):
        cdef int kind
        try:
            envelope = self.envelope.decode(frame)
        except self.decode_errors:
            return _DECLINED
        name = envelope.stream
        data = envelope.data
        if name is None or not data:
            return _DECLINED
        cached = self.channels.get(name)
        if cached is None:
            cached = self.channel_kind(name)
            if cached and len(self.channels) < 100_000:
                self.channels[name] = cached
        kind = cached
        if kind == F_DEPTH:
            return self._depth(name, data, receive_ts)
        if kind == F_AGG_TRADE or kind == F_TRADE:
            return self._trade(name, data, receive_ts, kind)
        if kind == F_TICKER:
            return self._ticker(name, data, receive_ts)
        return _DECLINED

    cdef object _depth(self, object name, object data, object receive_ts):
        cdef SymbolPath path
        cdef int64_t first, last, prev = 0, ts, received
        cdef bint has_prev
        cdef _Buffer buf = _shared
        try:
            msg = self.depth.decode(data)
        except self.decode_errors:
            return _DECLINED
        path = self._symbol(msg.s)
        if path.rule == 0:
            return _DECLINED
        sync = path.sync
        state = sync.state
        if state is self.awaiting:
            # Buffered with its levels undecoded until the snapshot comes (most turn out stale),
            # exactly as the generic parser does for a book waiting for its snapshot.
            diff = self.depth_diff(msg.U, msg.u, msg.pu, [], [], (msg.T or msg.E) * 1000, receive_ts, data)
            self.counters.frames += 1
            sync.on_diff(diff)  # while awaiting a snapshot it only buffers: no output
            self.handled += 1
            return name
        if state is not self.live:
            return _DECLINED
        py_first, py_last, py_prev = msg.U, msg.u, msg.pu
        previous = sync._previous
        if previous is None:
            # Live on a snapshot, no diff applied yet. A diff older than the snapshot is dropped
            # (at full speed most of the socket's backlog is); its levels are still read, so that
            # one the generic path would count as malformed goes there. The first diff that is
            # not stale must bridge the snapshot: generic.
            snapshot_id = sync._snapshot_id
            if not (py_last <= snapshot_id if path.rule == 1 else py_last < snapshot_id):
                return _DECLINED
            if not _levels_from_raw(self.bids, msg.b) or not _levels_from_raw(self.asks, msg.a):
                return _DECLINED
            self.handled += 1
            self.counters.frames += 1
            counters = sync.counters
            counters.diffs += 1
            counters.stale_dropped += 1
            return name
        previous_last = previous.last_id
        if py_last <= previous_last:
            return _DECLINED  # a duplicate: generic drops and counts it
        if path.rule == 1:
            if py_first != previous_last + 1:
                return _DECLINED  # a gap: generic resets
        elif py_prev is None or py_prev != previous_last:
            return _DECLINED
        py_ts = (msg.T or msg.E) * 1000
        try:
            first, last, ts, received = py_first, py_last, py_ts, receive_ts
            has_prev = py_prev is not None
            if has_prev:
                prev = py_prev
        except (OverflowError, TypeError):
            return _DECLINED
        if not _levels_from_raw(self.bids, msg.b) or not _levels_from_raw(self.asks, msg.a):
            return _DECLINED
        if not self._ready(F_DEPTH):
            return _DECLINED
        # Nothing was changed so far; from here on the frame is handled, as BookSync would.
        self.handled += 1
        self.counters.frames += 1
        sync.counters.diffs += 1
        path.book.apply_levels(self.bids, self.asks)
        diff = self.depth_diff(py_first, py_last, py_prev, [], [], py_ts, receive_ts)
        sync._previous = diff
        if path.book.is_crossed():
            self.on_crossed(path.venue_symbol, sync, diff, receive_ts)  # a reset, as generic
            return name
        buf.size = 0
        buf.write(self.book_header, len(self.book_header))
        buf.write(path.head, len(path.head))
        buf.write(b"\x02", 1)
        buf.write_long(ts)
        buf.write_long(received)
        buf.write_long(self.delta_index)
        _write_level_array(buf, self.bids)
        _write_level_array(buf, self.asks)
        buf.write(b"\x02", 1)
        buf.write_long(first)
        buf.write(b"\x02", 1)
        buf.write_long(last)
        if has_prev:
            buf.write(b"\x02", 1)
            buf.write_long(prev)
        else:
            buf.write(b"\x00", 1)
        buf.write(b"\x00\x00\x00", 3)  # sequence, prev_sequence, checksum: Binance has none
        self.book_sender.send_raw(path.key, PyBytes_FromStringAndSize(buf.data, buf.size))
        self.counters.events += 1
        return name

    cdef object _trade(self, object name, object data, object receive_ts, int kind):
        cdef SymbolPath path
        cdef u128 price, size
        cdef int64_t ts, received
        cdef const char* text
        cdef Py_ssize_t n
        cdef _Buffer buf = _shared
        try:
            msg = (self.agg_trade if kind == F_AGG_TRADE else self.trade).decode(data)
        except self.decode_errors:
            return _DECLINED
        if not _text_value(msg.p, &price) or not _text_value(msg.q, &size):
            return _DECLINED
        try:
            ts, received = msg.T * 1000, receive_ts
        except (OverflowError, TypeError):
            return _DECLINED
        trade_id = str(msg.a if kind == F_AGG_TRADE else msg.t)
        path = self._symbol(msg.s)
        if not self._ready(F_AGG_TRADE):
            return _DECLINED
        self.handled += 1
        self.counters.frames += 1
        buf.size = 0
        buf.write(self.trade_header, len(self.trade_header))
        buf.write(path.head, len(path.head))
        buf.write_long(ts)
        buf.write_long(received)
        text = PyUnicode_AsUTF8AndSize(trade_id, &n)
        buf.write_long(n)
        buf.write(text, n)
        _write_scaled(buf, price, False)
        _write_scaled(buf, size, False)
        buf.write_long(self.sell_index if msg.m else self.buy_index)  # m: the buyer was the maker
        self.trade_sender.send_raw(path.key, PyBytes_FromStringAndSize(buf.data, buf.size))
        self.counters.events += 1
        return name

    cdef object _ticker(self, object name, object data, object receive_ts):
        cdef SymbolPath path
        cdef u128 bid, bid_size, ask, ask_size
        cdef int64_t ts = 0, received, update_id
        cdef _Buffer buf = _shared
        try:
            msg = self.ticker.decode(data)
        except self.decode_errors:
            return _DECLINED
        if not (_text_value(msg.b, &bid) and _text_value(msg.B, &bid_size) and _text_value(msg.a, &ask)
                and _text_value(msg.A, &ask_size)):
            return _DECLINED
        exchange_ms = msg.T or msg.E
        try:
            if exchange_ms is not None:
                ts = exchange_ms * 1000
            received, update_id = receive_ts, msg.u
        except (OverflowError, TypeError):
            return _DECLINED
        path = self._symbol(msg.s)
        if not self._ready(F_TICKER):
            return _DECLINED
        self.handled += 1
        self.counters.frames += 1
        buf.size = 0
        buf.write(self.ticker_header, len(self.ticker_header))
        buf.write(path.head, len(path.head))
        if exchange_ms is None:
            buf.write(b"\x00", 1)
        else:
            buf.write(b"\x02", 1)
            buf.write_long(ts)
        buf.write_long(received)
        _write_scaled(buf, bid, False)
        _write_scaled(buf, bid_size, False)
        _write_scaled(buf, ask, False)
        _write_scaled(buf, ask_size, False)
        buf.write(b"\x02", 1)
        buf.write_long(update_id)
        self.ticker_sender.send_raw(path.key, PyBytes_FromStringAndSize(buf.data, buf.size))
        self.counters.events += 1
        return name
