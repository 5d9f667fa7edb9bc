"""Provisioning: project.yml in, signed PKI startup kits out.

Imports nothing else of flctl; `node`, `cloud` and `console` read kits through
`provisioner.kit_info`, `provisioner.kit_layout` and `provisioner.signing`.
"""
