"""The store: the only code that talks to LanceDB.

store (tables, settings, bulk writes), schema (Arrow schemas and SQL quoting), exact (in-memory
exact search), index (ANN indexes), filters (structured filters -> safe SQL), lease (one writer at
a time), integrity (check and repair), storage (storage failures in one line)."""
