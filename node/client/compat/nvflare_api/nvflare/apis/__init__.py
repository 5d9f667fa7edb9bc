"""`nvflare.apis`, as far as a client script imports it (`analytix.AnalyticsDataType`)."""
