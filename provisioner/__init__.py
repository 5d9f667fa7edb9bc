"""Provisioning: project.yml in, signed PKI startup kits out.

Imports nothing else of flctl; `node`, `cloud` and `console` read kits through
`flctl.provisioner.kit_info`, `flctl.provisioner.kit_layout` and `flctl.provisioner.signing`.
"""
