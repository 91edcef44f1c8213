"""The ``visionfleet`` command: layer 6 of 6, the edge where settings are read.

``main`` (the commands and their error boundary), ``jobs`` (relabel and
resume), ``embedded`` (the no-server default: workers of the command's own),
``progress`` (status and waiting), ``workers`` (``visionfleet worker``),
``supervisor`` (many worker processes on one host), ``online`` (classify,
stats), ``probes`` (health, scale), ``reports`` (diff, report), ``reach``
(a store or broker out of reach, said plainly).
"""
