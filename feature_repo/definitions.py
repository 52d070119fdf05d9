"""Feature definitions for the `feast` CLI (``cd feature_repo && feast apply``).

The objects are built by the library from the declared schema, so the CLI, the training
pipeline and the serving path all see the same definitions. The data directory defaults to
the platform's home (``../.aiinfra/data``); set ``AIINFRA_HOME`` to point elsewhere.
"""

import os
from pathlib import Path

from aiinfra.feature_definitions import define

_home = Path(os.environ.get("AIINFRA_HOME", Path(__file__).resolve().parent.parent / ".aiinfra"))
_repo = define(_home / "data")

applicant = _repo.applicant
zipcode = _repo.zipcode
applicant_source = _repo.applicant_source
zipcode_source = _repo.zipcode_source
applicant_profile = _repo.applicant_profile
zipcode_stats = _repo.zipcode_stats
loan_default_v1 = _repo.service
