"""The admin side: the typed Python API over the Admin service (`admin_client`) and its value types."""
