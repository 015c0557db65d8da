"""pytest configuration: a hypothesis profile and the import path of test helpers.

``long``: the 10 000-example fuzzing run (``make fuzz-long``, i.e. ``pytest
tests/test_fuzz.py --hypothesis-profile=long``).  Under the default profile the
fuzz test runs a few dozen networks (tests/test_fuzz.py), other property tests
keep hypothesis' defaults.
"""

import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/strategies.py

settings.register_profile(
    "long",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
