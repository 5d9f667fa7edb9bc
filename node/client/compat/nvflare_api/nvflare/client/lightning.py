"""`nvflare.client.lightning`: `patch(trainer)` and the Client API, as NVIDIA FLARE's Lightning examples import them
(`import nvflare.client.lightning as flare`). The callback is flctl's own (`flctl.node.client.lightning_patch`):
the global model loaded before fit, validate or test; the trained model and `trainer.callback_metrics` sent when
training ends; `trainer.validate` answering a validate task."""

from flctl.node.client.lightning_patch import FL_META, patch

from ..apis.analytix import AnalyticsDataType
from ..app_common.abstract.fl_model import FLMetaKey, FLModel, ParamsType
from .api import (
    clear,
    get_config,
    get_job_id,
    get_site_name,
    get_task_name,
    init,
    is_evaluate,
    is_running,
    is_submit_model,
    is_train,
    log,
    receive,
    send,
    shutdown,
    system_info,
)

__all__ = [
    "FL_META", "AnalyticsDataType", "FLMetaKey", "FLModel", "ParamsType", "clear", "get_config", "get_job_id",
    "get_site_name", "get_task_name", "init", "is_evaluate", "is_running", "is_submit_model", "is_train", "log",
    "patch", "receive", "send", "shutdown", "system_info",
]
