"""The synthetic world: users with hidden preferences, catalogs with text, a legacy logging policy
and event logs with a known ground truth, for two domains (retail, banking).

Entry points: :func:`simulation.generate.generate` (and the ``generate`` command in
:mod:`simulation.cli`), :class:`simulation.truth.GroundTruth` (``GroundTruth.load(paths, domain)``),
and :func:`simulation.behavior.respond` (users' answers to arbitrary slates).
"""
