"""`inspect --pretty` texts for nodes and services, from docker's own templates: pure.

The templates are docker's (cli/command/node/formatter.go, cli/command/service/
formatter.go) run by shoal's template renderer over a context with the same field names;
the context values are computed here from the API objects the way docker's context
methods compute them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from shoal.cli.durations import format_duration, human_duration, parse_time
from shoal.cli.format import bytes_size, pretty
from shoal.cli.templates import parse

__all__ = ["node_pretty", "service_pretty"]

_NODE = """ID:\t\t\t{{.ID}}
{{- if .Name }}
Name:\t\t\t{{.Name}}
{{- end }}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Hostname:              \t{{.Hostname}}
Joined at:             \t{{.CreatedAt}}
Status:
 State:\t\t\t{{.StatusState}}
 {{- if .StatusMessage}}
 Message:              \t{{.StatusMessage}}
 {{- end}}
 Availability:         \t{{.SpecAvailability}}
 {{- if .StatusAddr}}
 Address:\t\t{{.StatusAddr}}
 {{- end}}
{{- if .HasManagerStatus}}
Manager Status:
 Address:\t\t{{.ManagerStatusAddr}}
 Raft Status:\t\t{{.ManagerStatusReachability}}
 {{- if .IsManagerStatusLeader}}
 Leader:\t\tYes
 {{- else}}
 Leader:\t\tNo
 {{- end}}
{{- end}}
Platform:
 Operating System:\t{{.PlatformOS}}
 Architecture:\t\t{{.PlatformArchitecture}}
Resources:
 CPUs:\t\t\t{{.ResourceNanoCPUs}}
 Memory:\t\t{{.ResourceMemory}}
{{- if .EnginePlugins}}
Plugins:
{{- range $k, $v := .EnginePlugins }}
 {{ $k }}:{{if $v }}\t\t{{ $v }}{{ end }}
{{- end }}
{{- end }}
Engine Version:\t\t{{.EngineVersion}}
{{- if .EngineLabels}}
Engine Labels:
{{- range $k, $v := .EngineLabels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{- end }}
{{- if .TLSInfoTrustRoot}}
TLS Info:
 TrustRoot:
{{.TLSInfoTrustRoot}}
 Issuer Subject:\t{{.TLSInfoCertIssuerSubject}}
 Issuer Public Key:\t{{.TLSInfoCertIssuerPublicKey}}
{{- end}}"""


def _ago(stamp: str | None, now: datetime) -> str:
    parsed = parse_time(stamp or "")
    return f"{human_duration((now - parsed).total_seconds())} ago" if parsed else ""


_STAMP = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?Z")


def go_time_pretty(stamp: str) -> str:
    """docker's PrettyPrint of a time.Time: Go's `String()` (fraction without trailing
    zeros), everything after the first character lowered: `2026-12-04 21:15:51.028243 +0000
    utc`."""
    match = _STAMP.fullmatch(stamp)
    if match is None:
        return stamp
    day, clock, fraction = match.groups()
    fraction = (fraction or "")[:9].rstrip("0")
    return f"{day} {clock}{'.' + fraction if fraction else ''} +0000 utc"


def node_pretty(node: dict[str, Any], now: datetime) -> str:
    spec = node.get("Spec") or {}
    desc = node.get("Description") or {}
    status = node.get("Status") or {}
    manager = node.get("ManagerStatus") or {}
    engine = desc.get("Engine") or {}
    resources = desc.get("Resources") or {}
    tls = desc.get("TLSInfo") or {}
    plugins: dict[str, list[str]] = {}
    for plugin in engine.get("Plugins") or []:
        plugins.setdefault(str(plugin.get("Type")), []).append(str(plugin.get("Name")))
    nano = int(resources.get("NanoCPUs") or 0)
    context = {
        "ID": node.get("ID") or "",
        "Name": spec.get("Name") or "",
        "Labels": spec.get("Labels") or {},
        "Hostname": desc.get("Hostname") or "",
        "CreatedAt": go_time_pretty(node.get("CreatedAt") or ""),
        "StatusState": pretty(str(status.get("State") or "")),
        "StatusMessage": status.get("Message") or "",
        "SpecAvailability": pretty(str(spec.get("Availability") or "")),
        "StatusAddr": status.get("Addr") or "",
        "HasManagerStatus": bool(node.get("ManagerStatus")),
        "ManagerStatusAddr": manager.get("Addr") or "",
        "ManagerStatusReachability": pretty(str(manager.get("Reachability") or "")),
        "IsManagerStatusLeader": bool(manager.get("Leader")),
        "PlatformOS": (desc.get("Platform") or {}).get("OS") or "",
        "PlatformArchitecture": (desc.get("Platform") or {}).get("Architecture") or "",
        "ResourceNanoCPUs": nano // 1_000_000_000 if nano % 1_000_000_000 == 0 else nano / 1e9,
        "ResourceMemory": bytes_size(float(resources.get("MemoryBytes") or 0)),
        "EnginePlugins": {k: ", ".join(sorted(v)) for k, v in plugins.items()},
        "EngineVersion": engine.get("EngineVersion") or "",
        "EngineLabels": engine.get("Labels") or {},
        "TLSInfoTrustRoot": tls.get("TrustRoot") or "",
        "TLSInfoCertIssuerSubject": tls.get("CertIssuerSubject") or "",
        "TLSInfoCertIssuerPublicKey": tls.get("CertIssuerPublicKey") or "",
    }
    return parse(_NODE).execute(context)


_SERVICE = """
ID:\t\t{{.ID}}
Name:\t\t{{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Service Mode:
{{- if .IsModeGlobal }}\tGlobal
{{- else if .IsModeReplicated }}\tReplicated
{{- if .ModeReplicatedReplicas }}
 Replicas:\t{{ .ModeReplicatedReplicas }}
{{- end }}{{ end }}
{{- if .UpdateStatus }}
UpdateStatus:
 State:\t\t{{ .UpdateStatus.State }}
{{- if .UpdateStatusStarted }}
 Started:\t{{ .UpdateStatusStarted }}
{{- end }}
{{- if .UpdateStatusCompleted }}
 Completed:\t{{ .UpdateStatusCompleted }}
{{- end }}
 Message:\t{{ .UpdateStatus.Message }}
{{- end }}
Placement:
{{- if .Constraints }}
 Constraints:\t{{ .Constraints }}
{{- end }}
{{- if .Preferences }}
 Preferences:   {{ .Preferences }}
{{- end }}
{{- if .MaxReplicas }}
 Max Replicas Per Node:   {{ .MaxReplicas }}
{{- end }}
{{- with .Update }}
UpdateConfig:
 Parallelism:\t{{ .Parallelism }}
{{- if .Delay}}
 Delay:\t\t{{ .Delay }}
{{- end }}
 On failure:\t{{ .FailureAction }}
{{- if .Monitor}}
 Monitoring Period: {{ .Monitor }}
{{- end }}
 Max failure ratio: {{ .MaxFailureRatio }}
 Update order:      {{ .Order }}
{{- end }}
{{- with .Rollback }}
RollbackConfig:
 Parallelism:\t{{ .Parallelism }}
{{- if .Delay}}
 Delay:\t\t{{ .Delay }}
{{- end }}
 On failure:\t{{ .FailureAction }}
{{- if .Monitor}}
 Monitoring Period: {{ .Monitor }}
{{- end }}
 Max failure ratio: {{ .MaxFailureRatio }}
 Rollback order:    {{ .Order }}
{{- end }}
ContainerSpec:
 Image:\t\t{{ .Image }}
{{- if .Args }}
 Args:\t\t{{ range $arg := .Args }}{{ $arg }} {{ end }}
{{- end -}}
{{- if .Env }}
 Env:\t\t{{ range $env := .Env }}{{ $env }} {{ end }}
{{- end -}}
{{- if .Dir }}
 Dir:\t\t{{ .Dir }}
{{- end -}}
{{- if .HasInit }}
 Init:\t\t{{ .Init }}
{{- end -}}
{{- if .User }}
 User: {{ .User }}
{{- end }}
{{- if .HasCapabilities }}
Capabilities:
{{- if .CapabilityAdd }}
 Add: {{ .CapabilityAdd }}
{{- end }}
{{- if .CapabilityDrop }}
 Drop: {{ .CapabilityDrop }}
{{- end }}
{{- end }}
{{- if .Sysctls }}
SysCtls:
{{- range $k, $v := .Sysctls }}
 {{ $k }}{{if $v }}: {{ $v }}{{ end }}
{{- end }}{{ end }}
{{- if .Ulimits }}
Ulimits:
{{- range $k, $v := .Ulimits }}
 {{ $k }}: {{ $v }}
{{- end }}{{ end }}
{{- if .Mounts }}
Mounts:
{{- end }}
{{- range $mount := .Mounts }}
 Target:\t{{ $mount.Target }}
  Source:\t{{ $mount.Source }}
  ReadOnly:\t{{ $mount.ReadOnly }}
  Type:\t\t{{ $mount.Type }}
{{- end -}}
{{- if .Configs }}
Configs:
{{- range $config := .Configs }}
 Target:\t{{ $config.Target }}
  Source:\t{{ $config.Source }}
{{- end }}{{ end }}
{{- if .Secrets }}
Secrets:
{{- range $secret := .Secrets }}
 Target:\t{{ $secret.Target }}
  Source:\t{{ $secret.Source }}
{{- end }}{{ end }}
{{- with .Resources }}
Resources:
{{- with .Reservations }}
 Reservations:
{{- if .CPU }}
  CPU:\t\t{{ .CPU }}
{{- end }}
{{- if .Memory }}
  Memory:\t{{ .Memory }}
{{- end }}{{ end }}
{{- with .Limits }}
 Limits:
{{- if .CPU }}
  CPU:\t\t{{ .CPU }}
{{- end }}
{{- if .Memory }}
  Memory:\t{{ .Memory }}
{{- end }}{{ end }}
{{- if .Pids }}
  PIDs:\t\t{{ .Pids }}
{{- end }}{{ end }}
{{- if .Networks }}
Networks:
{{- range $network := .Networks }} {{ $network }}{{ end }} {{ end }}
Endpoint Mode:\t{{ .EndpointMode }}
{{- if .Ports }}
Ports:
{{- range $port := .Ports }}
 PublishedPort = {{ $port.PublishedPort }}
  Protocol = {{ $port.Protocol }}
  TargetPort = {{ $port.TargetPort }}
  PublishMode = {{ $port.PublishMode }}
{{- end }} {{ end -}}
{{- with .Healthcheck }}
 Healthcheck:
  Interval = {{ .Interval }}
  Retries = {{ .Retries }}
  StartPeriod =\t{{ .StartPeriod }}
  Timeout =\t{{ .Timeout }}
  {{- if .Test }}
  Tests:
\t{{- range $test := .Test }}
\t Test = {{ $test }}
  {{- end }} {{ end -}}
{{- end }}
"""


def _policy(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    return {
        "Parallelism": config.get("Parallelism") or 0,
        "Delay": format_duration(int(config.get("Delay") or 0)) if config.get("Delay") else "",
        "FailureAction": config.get("FailureAction") or "",
        "Monitor": format_duration(int(config["Monitor"])) if config.get("Monitor") else "",
        "MaxFailureRatio": config.get("MaxFailureRatio") or 0,
        "Order": config.get("Order") or "",
    }


def _health(container: dict[str, Any]) -> dict[str, Any] | None:
    health = next((v for k, v in container.items() if k.lower() == "healthcheck"), None)
    if not health:
        return None
    durations = {
        k: format_duration(int(health.get(k) or 0)) for k in ("Interval", "StartPeriod", "Timeout")
    }
    return {**durations, "Retries": health.get("Retries") or 0, "Test": health.get("Test") or []}


def _amounts(res: dict[str, Any]) -> dict[str, Any] | None:
    cpus, memory = int(res.get("NanoCPUs") or 0), int(res.get("MemoryBytes") or 0)
    if not cpus and not memory:
        return None
    cpu = f"{cpus / 1e9:g}" if cpus else ""
    return {"CPU": cpu, "Memory": bytes_size(memory) if memory else ""}


def _resources(task: dict[str, Any]) -> dict[str, Any] | None:
    """docker's Resources block: reservations, limits, then PIDs; the bare `Resources:`
    line whenever the spec has Resources at all (docker's HasResources: not nil)."""
    res = task.get("Resources")
    if res is None:
        return None
    reservations = _amounts(res.get("Reservations") or {})
    limits = _amounts(res.get("Limits") or {})
    pids = int((res.get("Limits") or {}).get("Pids") or 0)
    return {"Reservations": reservations, "Limits": limits, "Pids": pids}


def _refs(refs: list[dict[str, Any]] | None, name_key: str) -> list[dict[str, str]]:
    return [
        {"Target": (r.get("File") or {}).get("Name") or "", "Source": r.get(name_key) or ""}
        for r in refs or []
    ]


def _container_extras(container: dict[str, Any]) -> dict[str, Any]:
    cap_add, cap_drop = container.get("CapabilityAdd") or [], container.get("CapabilityDrop") or []
    return {
        "HasCapabilities": bool(cap_add or cap_drop),
        "CapabilityAdd": ", ".join(cap_add),
        "CapabilityDrop": ", ".join(cap_drop),
        "Sysctls": container.get("Sysctls") or {},
        "Ulimits": {
            u.get("Name"): f"{u.get('Soft', 0)}:{u.get('Hard', 0)}"
            for u in container.get("Ulimits") or []
        },
        "Mounts": [
            {
                "Target": m.get("Target") or "",
                "Source": m.get("Source") or "",
                "ReadOnly": "true" if m.get("ReadOnly") else "false",
                "Type": m.get("Type") or "",
            }
            for m in container.get("Mounts") or []
        ],
        "Configs": _refs(container.get("Configs"), "ConfigName"),
        "Secrets": _refs(container.get("Secrets"), "SecretName"),
    }


def service_pretty(service: dict[str, Any], now: datetime) -> str:
    spec = service.get("Spec") or {}
    task = spec.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") or {}
    placement = task.get("Placement") or {}
    mode = spec.get("Mode") or {}
    status = service.get("UpdateStatus") or None
    prefs = [
        f"{k}={v.get('SpreadDescriptor')}"
        for p in placement.get("Preferences") or []
        for k, v in p.items()
    ]
    context = {
        "ID": service.get("ID") or "",
        "Name": spec.get("Name") or "",
        "Labels": spec.get("Labels") or {},
        "IsModeGlobal": mode.get("Global") is not None,
        "IsModeReplicated": mode.get("Replicated") is not None,
        "ModeReplicatedReplicas": (mode.get("Replicated") or {}).get("Replicas"),
        "UpdateStatus": status,
        "UpdateStatusStarted": _ago((status or {}).get("StartedAt"), now),
        "UpdateStatusCompleted": _ago((status or {}).get("CompletedAt"), now)
        if (status or {}).get("State") == "completed"
        else "",
        "Constraints": placement.get("Constraints") or [],
        "Preferences": prefs,
        "MaxReplicas": placement.get("MaxReplicas") or 0,
        "Update": _policy(spec.get("UpdateConfig")),
        "Rollback": _policy(spec.get("RollbackConfig")),
        "Image": container.get("Image") or "",
        "Args": container.get("Args") or [],
        "Env": container.get("Env") or [],
        "Dir": container.get("Dir") or "",
        "HasInit": container.get("Init") is not None,
        "Init": container.get("Init"),
        "User": container.get("User") or "",
        "Networks": [n.get("Target") for n in task.get("Networks") or spec.get("Networks") or []],
        "EndpointMode": (spec.get("EndpointSpec") or {}).get("Mode") or "",
        "Ports": (service.get("Endpoint") or {}).get("Ports") or [],
        "Healthcheck": _health(container),
        "Resources": _resources(task),
        **_container_extras(container),
    }
    return parse(_SERVICE).execute(context).strip("\n")
