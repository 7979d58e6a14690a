"""Faust (faust-streaming) processors over the tickflow topics.

- ``app.py`` / ``worker.py``: the one Faust app (``tickflow worker``, ``faust -A processors.app``).
- ``codec.py``: Faust serializers on tickflow's Avro codec and schema registry.
- ``books.py``: the order-book agent; ``book.py`` (one book's logic), ``continuity.py`` (each
  venue's rules), ``levels.py`` (a book side), ``state.py`` (Faust tables), ``outputs.py``,
  ``web.py`` (``/books``).
"""
