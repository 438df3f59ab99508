"""collcost's single command line: ``collcost COMMAND ...`` (see :mod:`collcost.cli`).

The measuring, fitting and predicting code lives in the packages ``collectives`` and
``fits``; this package only dispatches to their commands.
"""
__version__ = "0.1.0"
