"""The Client API a training script uses (`api`, importable as `flctl.client`), its wire to
the site job process (`api_wire`) and the site's end that runs the script (`script_bridge`).
"""
