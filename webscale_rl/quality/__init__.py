"""Data quality (Great Expectations on the final `qa` table) and run reporting (MLflow).

Both heavy libraries are imported lazily, inside the functions that use them.
"""

from .expectations import DOMAINS, ValidationOutcome, validate_qa
from .report import RunReport

__all__ = ["DOMAINS", "RunReport", "ValidationOutcome", "validate_qa"]
