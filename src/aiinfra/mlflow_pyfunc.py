"""MLflow pyfunc flavour of the loan model, logged as code (MLflow "models from code").

Logging a model object would pickle it; logging this file means MLflow stores our weights
and JSON next to a reference to this code, and ``mlflow.pyfunc.load_model`` rebuilds the
model through :meth:`LoanModel.load`, so anyone can load a version the standard way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from aiinfra.model import LoanModel

ARTIFACT_KEY = "loan_model"


class LoanPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        self.model = LoanModel.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.model.predict_proba(model_input)


mlflow.models.set_model(LoanPyfunc())
