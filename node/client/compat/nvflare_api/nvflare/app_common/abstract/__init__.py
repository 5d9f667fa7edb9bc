"""`nvflare.app_common.abstract`: `fl_model` only."""
