"""`import nvflare.client as flare`: NVIDIA FLARE 2.x's Client API, run by flctl (see `api`)."""

from ..apis.analytix import AnalyticsDataType
from ..app_common.abstract.fl_model import FLMetaKey, FLModel, ParamsType
from .api import (
    clear,
    evaluate,
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
    train,
)

__all__ = [
    "AnalyticsDataType", "FLMetaKey", "FLModel", "ParamsType", "clear", "evaluate", "get_config", "get_job_id",
    "get_site_name", "get_task_name", "init", "is_evaluate", "is_running", "is_submit_model", "is_train", "log",
    "receive", "send", "shutdown", "system_info", "train",
]
