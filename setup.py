"""Builds the optional compiled Avro writer and readers; everything else is declared in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and the codec
writes with fastavro (same bytes, slower).
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize

    extensions = cythonize(
        [
            Extension("tickflow._hotpath", ["tickflow/_hotpath.pyx"], optional=True),
            Extension("tickflow._avro_reader", ["tickflow/_avro_reader.pyx"], optional=True),
            Extension("tickflow._avro_columns", ["tickflow/_avro_columns.pyx"], optional=True),
            # Plain Python, compiled as it is (it runs uncompiled where it is not built).
            Extension("tickflow.kafka_select", ["tickflow/kafka_select.py"], optional=True),
        ],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )
except ImportError:  # building without Cython: skip the extension
    extensions = []

setup(ext_modules=extensions)
