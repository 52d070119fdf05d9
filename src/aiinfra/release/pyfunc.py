"""MLflow pyfunc flavour of a platform model, logged as code (MLflow "models from code").

Logging a model object would pickle it; logging this file means MLflow stores our weights
and JSON next to a reference to this code, and ``mlflow.pyfunc.load_model`` rebuilds the
model through :meth:`TabularModel.load`, so anyone can load a version the standard way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from aiinfra.training.model import TabularModel

ARTIFACT_KEY = "tabular_model"


class TabularPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        self.model = TabularModel.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.model.predict(model_input)


mlflow.models.set_model(TabularPyfunc())
