"""The model a job runs when it names none.

A module of its own because the command that plans a job needs the name
but none of the model code: importing ``models`` pulls in numpy, Pillow and
the runtimes, a tenth of a second of every ``relabel``.
"""
DEFAULT_MODEL = "efficientnet_lite0"
