"""The ``honed`` command line: one module per command group; each calls the library and holds no logic."""
