"""Azure machines through azure-mgmt-resource, -network and -compute: resource group (when missing), network
security group with only the planned inbound rules and an explicit deny of everything else, virtual
network and subnet, static public IP, NIC, and a Linux VM that accepts only SSH keys; and their deletion.

Credentials come from `DefaultAzureCredential` (environment, workload or managed identity, Azure CLI);
flctl never reads or stores a secret. Long-running operations are polled as ARM's headers say.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

from flctl.cloud.deploy_errors import CloudCredentialsMissing, CloudError, CloudUnreachable, DeployError
from flctl.cloud.deploy_state import DeploymentState, Machine, Record
from flctl.cloud.machine_plan import MachinePlan, Rule
from flctl.cloud.machine_provider import CloudProgress, MachineProvider
from flctl.cloud.ssh_keys import ensure_key
from flctl.cloud.targets.azure import AzureMachine

T = TypeVar("T")
ORDER = {"virtual_machine": 0, "disk": 1, "network_interface": 2, "public_ip": 3, "virtual_network": 4,
         "network_security_group": 5, "resource_group": 6}
TYPES = {"network_security_group": "Microsoft.Network/networkSecurityGroups",
         "virtual_network": "Microsoft.Network/virtualNetworks",
         "public_ip": "Microsoft.Network/publicIPAddresses",
         "network_interface": "Microsoft.Network/networkInterfaces",
         "virtual_machine": "Microsoft.Compute/virtualMachines",
         "disk": "Microsoft.Compute/disks"}
DENY_PRIORITY = 4096


class _Gone(Exception):
    """The resource does not exist (HTTP 404)."""


def azure_call(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`; an Azure SDK failure becomes one sentence naming `what` (404 raises _Gone)."""
    from azure.core import exceptions as ax

    try:
        return call(*args, **kwargs)
    except ax.ResourceNotFoundError:
        raise _Gone(what) from None
    except ax.ClientAuthenticationError as exc:
        raise CloudCredentialsMissing(f"{what}: Azure refused or found no credentials ({_first_line(exc)}); "
                                      "sign in with `az login` or set AZURE_CLIENT_ID, AZURE_TENANT_ID and "
                                      "AZURE_CLIENT_SECRET") from None
    except ax.ServiceRequestError as exc:
        raise CloudUnreachable(f"{what}: cannot reach Azure Resource Manager ({_first_line(exc)})") from None
    except ax.HttpResponseError as exc:
        code = exc.error.code if exc.error is not None else exc.status_code
        message = exc.error.message if exc.error is not None else exc.reason
        raise CloudError(f"{what}: Azure said {code}: {message}") from None
    except ax.AzureError as exc:
        raise CloudError(f"{what}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def nsg_rules(rules: tuple[Rule, ...]) -> list[dict[str, Any]]:
    """The NSG's inbound rules (ARM's JSON): one allow per planned rule, then a deny of every other inbound
    connection (above Azure's defaults, which would let the whole virtual network in)."""
    def rule(name: str, description: str, protocol: str, source: str, port: str, access: str,
             priority: int) -> dict[str, Any]:
        return {"name": name, "properties": {
            "description": description, "protocol": protocol, "sourceAddressPrefix": source, "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": port, "access": access, "direction": "Inbound",
            "priority": priority}}

    out = [rule(f"flctl-{r.purpose}-{i}", r.description, "Tcp", r.cidr, str(r.port), "Allow", 100 + i)
           for i, r in enumerate(rules)]
    out.append(rule("flctl-deny-other-inbound", "flctl: nothing else may connect", "*", "*", "*", "Deny",
                    DENY_PRIORITY))
    return out


class AzureMachines(MachineProvider):
    """Azure Resource Manager, one set of clients per subscription and endpoint."""

    name = "azure"

    def __init__(self, state: DeploymentState, progress: CloudProgress | None = None, credential: Any = None,
                 connection_verify: str | bool | None = None, polling_interval: float = 5.0) -> None:
        super().__init__(state, progress)
        self._credential = credential
        self._verify = connection_verify
        self._polling = polling_interval
        self._clients: dict[tuple[str, str, str], Any] = {}

    # ---- clients --------------------------------------------------------------------------------------------
    def _client(self, kind: str, subscription: str, endpoint: str) -> Any:
        key = (kind, subscription, endpoint)
        if key not in self._clients:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                try:
                    self._credential = DefaultAzureCredential()
                except ValueError as exc:  # e.g. an empty or malformed AZURE_CLIENT_ID
                    raise CloudCredentialsMissing(f"the Azure credentials in the environment are unusable ({exc}); "
                                                  "fix or unset the AZURE_* variables, or sign in with `az login`"
                                                  ) from None
            options: dict[str, Any] = {"base_url": endpoint, "credential_scopes": [f"{endpoint.rstrip('/')}/.default"],
                                       "polling_interval": self._polling}
            if self._verify is not None:
                options["connection_verify"] = self._verify
            if kind == "resource":
                from azure.mgmt.resource.resources import ResourceManagementClient

                self._clients[key] = ResourceManagementClient(self._credential, subscription, **options)
            elif kind == "network":
                from azure.mgmt.network import NetworkManagementClient

                self._clients[key] = NetworkManagementClient(self._credential, subscription, **options)
            else:
                from azure.mgmt.compute import ComputeManagementClient

                self._clients[key] = ComputeManagementClient(self._credential, subscription, **options)
        return self._clients[key]

    # ---- ensure ---------------------------------------------------------------------------------------------
    def ensure(self, plan: MachinePlan) -> Machine:
        spec = plan.host.block_as(AzureMachine)
        sub, arm = spec.subscription, spec.arm_endpoint.rstrip("/")
        resource, network, compute = (self._client(k, sub, arm) for k in ("resource", "network", "compute"))
        rg, name, tags = spec.resource_group, plan.base_name, plan.tags
        self._resource_group(resource, plan, spec)
        nsg = self._ensure(plan, spec, "network_security_group", f"{name}-nsg", network.network_security_groups,
                           {"location": spec.location, "tags": tags,
                            "properties": {"securityRules": nsg_rules(plan.rules)}})
        vnet = self._ensure(plan, spec, "virtual_network", f"{name}-vnet", network.virtual_networks,
                            {"location": spec.location, "tags": tags, "properties": {
                                "addressSpace": {"addressPrefixes": [spec.address_space]},
                                "subnets": [{"name": "default", "properties": {
                                    "addressPrefix": spec.subnet_prefix, "networkSecurityGroup": {"id": nsg}}}]}})
        ip = self._ensure(plan, spec, "public_ip", f"{name}-ip", network.public_ip_addresses,
                          {"location": spec.location, "tags": tags, "sku": {"name": "Standard"},
                           "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}})
        nic = self._ensure(plan, spec, "network_interface", f"{name}-nic", network.network_interfaces,
                           {"location": spec.location, "tags": tags, "properties": {
                               "networkSecurityGroup": {"id": nsg},
                               "ipConfigurations": [{"name": "primary", "properties": {
                                   "subnet": {"id": f"{vnet}/subnets/default"}, "publicIPAddress": {"id": ip},
                                   "privateIPAllocationMethod": "Dynamic"}}]}})
        public_key = ensure_key(self.state.keys / plan.participant, f"flctl-{plan.participant}")
        vm = self._ensure(plan, spec, "virtual_machine", f"{name}-vm", compute.virtual_machines,
                          self._vm_body(plan, spec, nic, public_key), update=False)
        self._record(plan, "disk", f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{TYPES['disk']}/"
                     f"{name}-osdisk", f"{name}-osdisk", sub, "made with the VM", arm=arm)
        address = azure_call("reading the public IP", network.public_ip_addresses.get, rg, f"{name}-ip").ip_address
        if not address:
            raise DeployError(f"{plan.participant}: public IP {name}-ip has no address yet; run the deploy again")
        return Machine(plan.participant, "azure", str(address), plan.host.user,
                       str(self.state.keys / plan.participant), vm)

    def _vm_body(self, plan: MachinePlan, spec: AzureMachine, nic: str, public_key: str) -> dict[str, Any]:
        """The VM in ARM's JSON: SSH keys only (password login disabled, no password sent), cloud-init data."""
        publisher, offer, sku, version = spec.image.split(":")
        user = plan.host.user
        os_disk: dict[str, Any] = {"name": f"{plan.base_name}-osdisk", "createOption": "FromImage",
                                   "deleteOption": "Delete", "caching": "ReadWrite",
                                   "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}
        if spec.disk_gb is not None:
            os_disk["diskSizeGB"] = spec.disk_gb
        return {"location": spec.location, "tags": plan.tags, "properties": {
            "hardwareProfile": {"vmSize": spec.vm_size},
            "storageProfile": {"imageReference": {"publisher": publisher, "offer": offer, "sku": sku,
                                                  "version": version}, "osDisk": os_disk},
            "osProfile": {"computerName": plan.base_name[:63], "adminUsername": user,
                          "customData": base64.b64encode(spec.user_data.encode()).decode(),
                          "linuxConfiguration": {
                              "disablePasswordAuthentication": True, "provisionVMAgent": True,
                              "ssh": {"publicKeys": [{"path": f"/home/{user}/.ssh/authorized_keys",
                                                      "keyData": public_key}]}}},
            "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": True}}]}}}

    def _resource_group(self, resource: Any, plan: MachinePlan, spec: AzureMachine) -> None:
        rg, sub = spec.resource_group, spec.subscription
        mine = any(r.kind == "resource_group" and r.name == rg and r.location == sub for r in self.state.records)
        if azure_call("checking the resource group", resource.resource_groups.check_existence, rg):
            self.progress.resource_ready(plan.participant, "resource_group", rg, "reused" if mine else "used as it is")
            return
        azure_call("creating the resource group", resource.resource_groups.create_or_update, rg,
                   {"location": spec.location,
                    "tags": {k: v for k, v in plan.tags.items() if k not in ("flctl:participant", "Name")}})
        self._record(plan, "resource_group", f"/subscriptions/{sub}/resourceGroups/{rg}", rg, sub, "created",
                     arm=spec.arm_endpoint.rstrip("/"))

    def _ensure(self, plan: MachinePlan, spec: AzureMachine, kind: str, name: str, operations: Any,
                body: dict[str, Any], update: bool = True) -> str:
        """Create `name` with `body`, or bring it back to `body` when it exists (`update`); refuse one of that
        name this deployment did not make."""
        rg = spec.resource_group
        record = self.state.find(plan.participant, kind)
        try:
            existing = azure_call(f"reading {name}", operations.get, rg, name)
        except _Gone:
            existing = None
        if existing is not None and (existing.tags or {}).get("flctl:deployment") != plan.deployment:
            raise DeployError(f"{name} already exists in resource group {rg} but was not made by this deployment; "
                              "delete it or use another resource group")
        how = "created" if existing is None else "reused" if record is not None else "adopted"
        if existing is not None and not update:
            self._record(plan, kind, str(existing.id), name, spec.subscription, how, arm=spec.arm_endpoint.rstrip("/"))
            return str(existing.id)
        poller = azure_call(f"creating {name}", operations.begin_create_or_update, rg, name, body)
        made = azure_call(f"waiting for {name}", poller.result)
        self._record(plan, kind, str(made.id), name, spec.subscription, how, arm=spec.arm_endpoint.rstrip("/"))
        return str(made.id)

    # ---- delete ---------------------------------------------------------------------------------------------
    def destroy_order(self, records: list[Record]) -> list[Record]:
        return sorted(records, key=lambda r: ORDER.get(r.kind, 9))

    def delete(self, record: Record) -> bool:
        arm = record.extra.get("arm", "https://management.azure.com")
        group = record.id.split("/")[4]
        try:
            if record.kind == "resource_group":
                resource = self._client("resource", record.location, arm)
                others = [r.id for r in azure_call("listing the resource group", resource.resources.
                                                   list_by_resource_group, group)
                          if not any(r.id.lower() == o.id.lower() for o in self.state.records if o != record)]
                if others:
                    raise DeployError(f"resource group {group} holds resources flctl did not create ("
                                      f"{', '.join(o.rsplit('/', 1)[-1] for o in others[:3])}); delete them or "
                                      "the group yourself, then run destroy again")
                poller = azure_call(f"deleting resource group {group}", resource.resource_groups.begin_delete, group)
            else:
                client = self._client("compute" if TYPES[record.kind].startswith("Microsoft.Compute") else "network",
                                      record.location, arm)
                operations = {"network_security_group": "network_security_groups",
                              "virtual_network": "virtual_networks", "public_ip": "public_ip_addresses",
                              "network_interface": "network_interfaces", "virtual_machine": "virtual_machines",
                              "disk": "disks"}[record.kind]
                poller = azure_call(f"deleting {record.name}", getattr(client, operations).begin_delete, group,
                                    record.name)
            azure_call(f"waiting for {record.name} to go", poller.result)
        except _Gone:
            return False
        return True
