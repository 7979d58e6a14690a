# The compiled Avro writer's and reader's field kinds (tickflow/_hotpath.pyx, _avro_reader.pyx);
# avro_plan.py reads them from _hotpath's KIND_* names.
DEF K_STRING = 1
DEF K_BYTES = 2
DEF K_LONG = 3
DEF K_BOOLEAN = 4
DEF K_ENUM = 5
DEF K_DECIMAL = 6
DEF K_ARRAY = 7
DEF K_RECORD = 8
