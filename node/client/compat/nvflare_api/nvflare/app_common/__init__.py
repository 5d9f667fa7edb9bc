"""`nvflare.app_common`, as far as a client script imports it (`abstract.fl_model`)."""
