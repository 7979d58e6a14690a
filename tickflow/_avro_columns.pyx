# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A compiled Avro reader that writes records into columns, for Arrow (``tickflow/arrow.py``).

``ColumnReader(plan)`` appends each record it reads to one column per field, in the layout
Arrow's arrays use, so that a batch of records becomes Arrow arrays without a Python object a
value: longs as 8-byte little-endian integers, decimals as 16-byte little-endian two's
complement (Arrow's ``decimal128``: the unscaled integer, copied from the wire's big-endian
bytes), strings and bytes as one data buffer with 4-byte offsets, enums as their indexes (a
dictionary array), booleans as a byte each, nested records as child columns, arrays of records
as offsets over child columns, validity (nullable fields) and booleans as Arrow's bitmaps.

The plan is the compiled writer's (``avro_plan.build_plan``), as ``_avro_reader``'s is: the
three agree on the shapes handled. A record that does not parse raises ``MalformedRecord``
naming the field, and leaves every column as it was before that record (``append`` rolls back).
"""

from cpython.bytes cimport PyBytes_AsStringAndSize, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset

from tickflow._avro_reader import MalformedRecord


include "_avro_kinds.pxi"

#: Arrow's 32-bit offsets: a column's strings (or list items) may not pass this many bytes.
DEF MAX_OFFSET = 2147483647


include "_avro_wire.pxi"


cdef class _Buffer:
    """A growable byte buffer (``bytes`` of it at the end)."""

    cdef char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity

    def __dealloc__(self):
        PyMem_Free(self.data)

    cdef inline char* grow(self, Py_ssize_t n) except NULL:
        """Room for ``n`` more bytes at the end; returns where they go (``size`` advanced)."""
        cdef Py_ssize_t need = self.size + n
        cdef Py_ssize_t capacity
        cdef char* data
        if need > self.capacity:
            capacity = max(need, 2 * self.capacity, 256)
            data = <char*>PyMem_Realloc(self.data, capacity)
            if data == NULL:
                raise MemoryError()
            self.data, self.capacity = data, capacity
        self.size = need
        return self.data + need - n

    cdef bytes take(self):
        out = PyBytes_FromStringAndSize(self.data, self.size)
        self.size = 0
        return out


cdef inline int _bit(_Buffer bits, Py_ssize_t index, bint value) except -1:
    """Sets bit ``index`` of a bitmap that holds bits up to ``index`` (exclusive) so far."""
    if index & 7 == 0:
        bits.grow(1)[0] = 0
    if value:
        bits.data[index >> 3] |= <char>(1 << (index & 7))
    return 0


cdef inline void _truncate_bits(_Buffer bits, Py_ssize_t length):
    bits.size = (length + 7) >> 3
    if length & 7:
        bits.data[length >> 3] &= <char>((1 << (length & 7)) - 1)


cdef class _Column:
    """One field's values in Arrow's layout (see the module's doc)."""

    cdef readonly str name
    cdef readonly int kind
    cdef readonly bint nullable
    cdef readonly Py_ssize_t length
    cdef readonly Py_ssize_t null_count
    cdef _Buffer validity
    cdef _Buffer values
    cdef _Buffer offsets
    #: Nested columns: the record's fields (RECORD) or the array items' fields (ARRAY).
    cdef list children
    cdef Py_ssize_t items  # ARRAY: items appended so far (the children's length)
    cdef readonly tuple symbols  # ENUM: its symbols by index

    def __init__(self, str name, int kind, bint nullable, object arg):
        self.name = name
        self.kind = kind
        self.nullable = nullable
        self.validity, self.values, self.offsets = _Buffer(), _Buffer(), _Buffer()
        self.children = []
        if kind == K_RECORD or kind == K_ARRAY:
            self.children = _columns(arg)
        if kind == K_ENUM:
            self.symbols = _enum_symbols(arg)
        if kind == K_STRING or kind == K_BYTES or kind == K_ARRAY:
            (<int32_t*>self.offsets.grow(4))[0] = 0

    cdef int append_null(self) except -1:
        cdef _Column child
        if self.nullable:  # else: a slot under a null parent record, any value will do
            self.null_count += 1
            _bit(self.validity, self.length, 0)
        self.length += 1
        if self.kind == K_STRING or self.kind == K_BYTES:
            (<int32_t*>self.offsets.grow(4))[0] = <int32_t>self.values.size
        elif self.kind == K_ARRAY:
            (<int32_t*>self.offsets.grow(4))[0] = <int32_t>self.items
        elif self.kind == K_RECORD:  # a null struct still has a slot in each child
            for child in self.children:
                child.append_null()
        elif self.kind == K_DECIMAL:
            memset(self.values.grow(16), 0, 16)
        elif self.kind == K_LONG:
            memset(self.values.grow(8), 0, 8)
        elif self.kind == K_ENUM:
            memset(self.values.grow(4), 0, 4)
        elif self.kind == K_BOOLEAN:
            _bit(self.values, self.length - 1, 0)
        return 0

    cdef int read(self, _Cursor* c) except -1:
        """The next value on the wire (its union branch first, if nullable)."""
        cdef int64_t branch, index, count
        cdef Py_ssize_t n, i
        cdef const unsigned char* p
        cdef unsigned char* out
        cdef unsigned char fill
        if self.nullable:
            branch = _long(c)
            if branch == 0:
                self.append_null()
                return 0
            if branch != 1:
                raise MalformedRecord(f"union branch {branch} (the schema has 2)")
            _bit(self.validity, self.length, 1)
        self.length += 1
        if self.kind == K_DECIMAL:
            n = _length(c)
            if n > 16:
                raise MalformedRecord(f"a decimal of {n} bytes (decimal128 holds 16)")
            p = c.data + c.pos
            c.pos += n
            out = <unsigned char*>self.values.grow(16)
            fill = 0xFF if n and p[0] & 0x80 else 0
            for i in range(n):  # big-endian on the wire, little-endian in Arrow
                out[i] = p[n - 1 - i]
            if n < 16:
                memset(out + n, fill, 16 - n)
        elif self.kind == K_LONG:
            (<int64_t*>self.values.grow(8))[0] = _long(c)
        elif self.kind == K_STRING or self.kind == K_BYTES:
            n = _length(c)
            if self.values.size + n > MAX_OFFSET:
                raise OverflowError(f"{self.name}: more than 2 GiB of text in one batch")
            if n:
                memcpy(self.values.grow(n), c.data + c.pos, n)
            c.pos += n
            (<int32_t*>self.offsets.grow(4))[0] = <int32_t>self.values.size
        elif self.kind == K_ENUM:
            index = _long(c)
            if not 0 <= index < len(self.symbols):
                raise MalformedRecord(f"enum index {index} (the schema has {len(self.symbols)} symbols)")
            (<int32_t*>self.values.grow(4))[0] = <int32_t>index
        elif self.kind == K_RECORD:
            _read_fields(self.children, c)
        elif self.kind == K_ARRAY:
            while True:
                count = _block(c)
                if count == 0:
                    break
                for i in range(count):
                    _read_fields(self.children, c)
                self.items += count
            (<int32_t*>self.offsets.grow(4))[0] = <int32_t>self.items
        elif self.kind == K_BOOLEAN:
            if c.pos >= c.end:
                raise MalformedRecord("truncated boolean")
            if c.data[c.pos] > 1:
                raise MalformedRecord(f"boolean byte {c.data[c.pos]}")
            _bit(self.values, self.length - 1, c.data[c.pos])
            c.pos += 1
        else:
            raise MalformedRecord(f"unsupported field kind {self.kind}")
        return 0

    cdef void truncate(self, Py_ssize_t length):
        """Back to ``length`` values (after a record that did not parse), children too."""
        cdef Py_ssize_t i, nulls = 0
        cdef _Column child
        self.length = length
        if self.nullable:
            _truncate_bits(self.validity, length)
            for i in range(length):
                nulls += not (self.validity.data[i >> 3] >> (i & 7)) & 1
        self.null_count = nulls
        if self.kind == K_STRING or self.kind == K_BYTES or self.kind == K_ARRAY:
            self.offsets.size = (length + 1) * 4
            if self.kind == K_ARRAY:
                self.items = (<int32_t*>self.offsets.data)[length]
                for child in self.children:
                    child.truncate(self.items)
            else:
                self.values.size = (<int32_t*>self.offsets.data)[length]
        elif self.kind == K_RECORD:
            for child in self.children:
                child.truncate(length)
        elif self.kind == K_BOOLEAN:
            _truncate_bits(self.values, length)
        else:
            self.values.size = length * _width(self.kind)

    cdef dict take(self):
        """The column's buffers (and its children's), and a fresh start."""
        out = {"name": self.name, "kind": self.kind, "length": self.length, "null_count": self.null_count,
               "validity": self.validity.take() if self.nullable else None, "values": self.values.take(),
               "offsets": None, "children": [(<_Column>child).take() for child in self.children],
               "symbols": self.symbols}
        if self.kind == K_STRING or self.kind == K_BYTES or self.kind == K_ARRAY:
            out["offsets"] = self.offsets.take()
            (<int32_t*>self.offsets.grow(4))[0] = 0
        self.length = self.null_count = self.items = 0
        return out


cdef inline Py_ssize_t _width(int kind):
    if kind == K_DECIMAL:
        return 16
    if kind == K_LONG:
        return 8
    return 4  # K_ENUM


cdef list _columns(object plan):
    return [_Column(name, kind, nullable, arg)
            for name, kind, nullable, arg in zip(plan.names, plan.kinds, plan.nullable, plan.args)]


cdef int _read_fields(list columns, _Cursor* c) except -1:
    cdef _Column column
    for column in columns:
        column.read(c)
    return 0


cdef class ColumnReader:
    """Reads records of one schema into columns: ``append(payload, start)`` a record at a time,
    ``take()`` the columns so far (and start again)."""

    cdef readonly object plan
    cdef list columns
    cdef readonly Py_ssize_t length
    cdef str name

    def __init__(self, plan):
        self.plan = plan
        self.name = plan.record_name
        self.columns = _columns(plan)

    def append(self, bytes payload, Py_ssize_t start=0):
        """Reads the record in ``payload[start:]`` (which must end where the record does) into
        the columns; a malformed one raises ``MalformedRecord`` and appends nothing."""
        self._append(payload, start)

    cdef int _append(self, bytes payload, Py_ssize_t start) except -1:
        cdef _Cursor c
        cdef Py_ssize_t i = 0
        _open(&c, payload, start)
        try:
            for i in range(len(self.columns)):
                (<_Column>self.columns[i]).read(&c)
        except MalformedRecord as exc:
            self._truncate()
            raise MalformedRecord(f"{self.name}.{(<_Column>self.columns[i]).name}: {exc}") from None
        except UnicodeDecodeError:
            self._truncate()
            raise MalformedRecord(f"{self.name}.{(<_Column>self.columns[i]).name}: not UTF-8") from None
        except BaseException:
            self._truncate()
            raise
        if c.pos != c.end:
            self._truncate()
            raise MalformedRecord(f"{c.end - c.pos} bytes after the end of the {self.name} record")
        self.length += 1
        return 0

    cdef void _truncate(self):
        """Every column back to the records appended whole."""
        cdef _Column column
        for column in self.columns:
            column.truncate(self.length)

    def take(self):
        """The columns' buffers (a list of dicts, one a field, as ``arrow.py`` reads them)."""
        out = [(<_Column>column).take() for column in self.columns]
        self.length = 0
        return out


cdef class Coordinates:
    """Where each record came from, a column each: topic (an index into ``topics``), partition,
    offset, Kafka timestamp (ms)."""

    cdef readonly list topics
    cdef dict topic_index
    cdef object last_topic
    cdef int32_t last_index
    cdef _Buffer topic_ids
    cdef _Buffer partitions
    cdef _Buffer offsets
    cdef _Buffer timestamps
    cdef readonly Py_ssize_t length

    def __init__(self):
        self.topics, self.topic_index = [], {}
        self.topic_ids, self.partitions, self.offsets, self.timestamps = _Buffer(), _Buffer(), _Buffer(), _Buffer()

    cdef int add(self, str topic, int32_t partition, int64_t offset, int64_t timestamp) except -1:
        if topic is not self.last_topic:  # the same str object, record after record
            index = self.topic_index.get(topic)
            if index is None:
                index = self.topic_index[topic] = len(self.topics)
                self.topics.append(topic)
            self.last_topic, self.last_index = topic, index
        (<int32_t*>self.topic_ids.grow(4))[0] = self.last_index
        (<int32_t*>self.partitions.grow(4))[0] = partition
        (<int64_t*>self.offsets.grow(8))[0] = offset
        (<int64_t*>self.timestamps.grow(8))[0] = timestamp
        self.length += 1
        return 0

    def append(self, str topic, int32_t partition, int64_t offset, int64_t timestamp):
        self.add(topic, partition, offset, timestamp)

    def take(self):
        """(topics, topic ids, partitions, offsets, timestamps) so far, and a fresh start."""
        out = (list(self.topics), self.topic_ids.take(), self.partitions.take(), self.offsets.take(),
               self.timestamps.take())
        self.length = 0
        return out


cdef class MessageReader:
    """Reads confluent-kafka ``Message``s into the columns of their event type, a list at a time,
    in C: ``add(messages, start)`` reads from ``messages[start]`` on and returns the index of the
    first it cannot (a schema id it was not given with ``use``, a record that does not parse:
    the caller deals with that one and calls again from the next), or ``len(messages)``."""

    cdef dict by_schema  # schema id -> (ColumnReader, Coordinates)

    def __init__(self):
        self.by_schema = {}

    def use(self, int schema_id, ColumnReader reader, Coordinates coordinates):
        """Records written with ``schema_id`` go to ``reader`` (exactly our schema)."""
        self.by_schema[schema_id] = (reader, coordinates)

    def add(self, list messages, Py_ssize_t start=0):
        cdef Py_ssize_t i, n = len(messages)
        cdef bytes value
        cdef const unsigned char* raw
        cdef int schema_id
        cdef tuple entry
        cdef ColumnReader reader
        for i in range(start, n):
            message = messages[i]
            value = message.value()
            if value is None or len(value) < 5 or (<const unsigned char*>(<char*>value))[0] != 0:
                return i
            raw = <const unsigned char*>(<char*>value)
            schema_id = (raw[1] << 24) | (raw[2] << 16) | (raw[3] << 8) | raw[4]
            entry = self.by_schema.get(schema_id)
            if entry is None:
                return i
            reader = <ColumnReader>entry[0]
            try:
                reader._append(value, 5)
            except MalformedRecord:
                return i
            (<Coordinates>entry[1]).add(message.topic(), message.partition(), message.offset(),
                                        message.timestamp()[1])
        return n
