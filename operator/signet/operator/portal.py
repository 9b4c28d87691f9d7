"""What the portal needs beyond the common Deployment: its environment, the Ingress and
certificate that expose it, its NetworkPolicy's peers, and the Secrets made once.

Secrets stay references: a credential the portal reads as part of a JSON setting
(``SIGNET_PORTAL_SMTP``) comes into the pod as its own variable from the Secret,
and the JSON names it as ``$(VARIABLE)``, which the kubelet expands when the
container starts.  The manifest never holds the value, and neither does the
operator, which never reads those Secrets.  The values must be JSON-string safe
(no ``"`` or backslash): the kubelet substitutes them as they are.

Kept apart from `components` (which imports it for the component table), so it
imports nothing of the operator's.
"""

from __future__ import annotations

import json
from typing import Any

from signet.common.contracts.appliance import ApplianceSpec, EgressPeer, PortalSpec

Manifest = dict[str, Any]
PORTAL_PORT = 8103
SIGNER_PORT = 8101
STORAGE_PORT = 8102
POSTGRES_PORT = 5432


def first_admin_secret_name(name: str) -> str:
    """The first administrator's credentials, made once by the operator."""
    return f"{name}-portal-first-admin"


def secret_key_secret_name(name: str) -> str:
    """The portal's server-side secret (link and code keys are derived from it)."""
    return f"{name}-portal-secret-key"


def tls_secret_name(name: str, portal: PortalSpec) -> str:
    return portal.tls.secret_name or f"{name}-portal-tls"


def _secret_env(variable: str, secret: str, key: str) -> Manifest:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _channels(prefix: str, portal: PortalSpec) -> list[Manifest]:
    """SMTP and SMS as `prefix`_SMTP / `prefix`_SMS JSON, credentials by reference."""
    env: list[Manifest] = []
    if portal.smtp is not None:
        smtp: dict[str, Any] = {
            "host": portal.smtp.host,
            "port": portal.smtp.port,
            "security": portal.smtp.security,
            "sender": portal.smtp.sender,
        }
        if portal.smtp.credentials is not None:
            env.append(_secret_env("SMTP_USERNAME", portal.smtp.credentials, "username"))
            env.append(_secret_env("SMTP_PASSWORD", portal.smtp.credentials, "password"))
            smtp |= {"username": "$(SMTP_USERNAME)", "password": "$(SMTP_PASSWORD)"}
        env.append({"name": f"{prefix}_SMTP", "value": json.dumps(smtp, sort_keys=True)})
    if portal.sms is not None:
        env.append(_secret_env("SMS_ACCOUNT_SID", portal.sms.credentials, "account-sid"))
        env.append(_secret_env("SMS_AUTH_TOKEN", portal.sms.credentials, "auth-token"))
        sms = {
            "base_url": portal.sms.url,
            "sender": portal.sms.sender,
            "account_sid": "$(SMS_ACCOUNT_SID)",
            "auth_token": "$(SMS_AUTH_TOKEN)",
        }
        env.append({"name": f"{prefix}_SMS", "value": json.dumps(sms, sort_keys=True)})
    return env


def portal_env(name: str, spec: ApplianceSpec) -> list[Manifest]:
    portal = spec.portal
    env: list[Manifest] = [
        {"name": "SIGNET_PORTAL_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
        {"name": "SIGNET_PORTAL_PUBLIC_URL", "value": f"https://{portal.hostname}"},
        {"name": "SIGNET_PORTAL_SIGNER_URL", "value": f"http://{name}-signer:{SIGNER_PORT}"},
        {"name": "SIGNET_PORTAL_STORAGE_URL", "value": f"http://{name}-storage:{STORAGE_PORT}"},
        _secret_env("SIGNET_PORTAL_SECRET_KEY", secret_key_secret_name(name), "key"),
        # its caller token for the signer and storage: the appliance's service token
        _secret_env("SIGNET_PORTAL_SERVICE_CALLER_TOKEN", f"{name}-service-token", "token"),
        _secret_env(
            "SIGNET_PORTAL_FIRST_ADMIN_PASSWORD", first_admin_secret_name(name), "password"
        ),
        {"name": "SIGNET_PORTAL_FIRST_ADMIN_EMAIL", "value": portal.first_admin_email},
    ]
    if portal.database is not None:
        env.append(
            _secret_env("SIGNET_PORTAL_DATABASE_URL", portal.database.name, portal.database.key)
        )
    env.extend(_channels("SIGNET_PORTAL", portal))
    if portal.oidc is not None:
        oidc = portal.oidc
        env.append(
            _secret_env("OIDC_CLIENT_SECRET", oidc.client_secret.name, oidc.client_secret.key)
        )
        value = {
            "issuer": oidc.issuer,
            "client_id": oidc.client_id,
            "client_secret": "$(OIDC_CLIENT_SECRET)",
            "group_roles": dict(oidc.group_roles),
        }
        env.append({"name": "SIGNET_PORTAL_OIDC", "value": json.dumps(value, sort_keys=True)})
    return env


def signer_channel_env(spec: ApplianceSpec) -> list[Manifest]:
    """The signer's activation channels: the portal's mail relay and SMS gateway, when
    the portal is enabled and `signerChannels` (the signer sends intent codes itself)."""
    portal = spec.portal
    if not (portal.enabled and portal.signer_channels):
        return []
    return _channels("SIGNET_SIGNER", portal)


def signer_channel_ports(spec: ApplianceSpec) -> set[int]:
    """TCP ports the signer's channels use (its egress gains only these)."""
    portal = spec.portal
    if not (portal.enabled and portal.signer_channels):
        return set()
    ports = set()
    if portal.smtp is not None:
        ports.add(portal.smtp.port)
    if portal.sms is not None:
        scheme, _, rest = portal.sms.url.partition("://")
        host = rest.split("/", 1)[0]
        ports.add(
            int(host.rsplit(":", 1)[1]) if ":" in host else (443 if scheme == "https" else 80)
        )
    return ports


def _peer(peer: EgressPeer, ports: list[int]) -> Manifest:
    to: list[Manifest] = [{"ipBlock": {"cidr": cidr}} for cidr in peer.cidrs]
    if peer.namespace_selector is not None:
        to.append(
            {"namespaceSelector": {"matchLabels": dict(peer.namespace_selector.match_labels)}}
        )
    return {"to": to, "ports": [{"protocol": "TCP", "port": p} for p in ports]}


def portal_egress(name: str, spec: ApplianceSpec, labels: Any) -> list[Manifest]:
    """The portal leaves for signer, storage, PostgreSQL and the admin's destinations
    (`egress`) alone; DNS is added by the caller, as for every component."""
    egress: list[Manifest] = [
        {
            "to": [{"podSelector": {"matchLabels": labels(name, "signer")}}],
            "ports": [{"protocol": "TCP", "port": SIGNER_PORT}],
        },
        {
            "to": [{"podSelector": {"matchLabels": labels(name, "storage")}}],
            "ports": [{"protocol": "TCP", "port": STORAGE_PORT}],
        },
        {"ports": [{"protocol": "TCP", "port": POSTGRES_PORT}]},
    ]
    egress.extend(_peer(peer, list(peer.ports)) for peer in spec.portal.egress)
    return egress


def signer_channel_egress(spec: ApplianceSpec) -> list[Manifest]:
    """The admin's destinations, narrowed to the ports of the signer's channels."""
    ports = signer_channel_ports(spec)
    result = []
    for peer in spec.portal.egress:
        shared = sorted(ports & set(peer.ports))
        if shared:
            result.append(_peer(peer, shared))
    return result


def portal_ingress_from(spec: ApplianceSpec) -> list[Manifest]:
    """The ingress controller's namespaces (the operator is added by the caller)."""
    if not spec.portal.ingress.enabled:
        return []
    selector = dict(spec.portal.ingress.controller_namespace.match_labels)
    return [{"namespaceSelector": {"matchLabels": selector}}]


def exposure(name: str, namespace: str, spec: ApplianceSpec, labels: Manifest) -> list[Manifest]:
    """The Ingress (unless disabled) and cert-manager's Certificate (when an issuer is
    named) of an enabled portal."""
    portal = spec.portal
    if not portal.enabled or portal.hostname is None:
        return []
    objects: list[Manifest] = []
    secret = tls_secret_name(name, portal)
    meta = {"namespace": namespace, "labels": labels}
    if portal.tls.cert_manager_issuer is not None:
        objects.append(
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {"name": f"{name}-portal", **meta},
                "spec": {
                    "secretName": secret,
                    "dnsNames": [portal.hostname],
                    "issuerRef": {
                        "name": portal.tls.cert_manager_issuer,
                        "kind": portal.tls.issuer_kind,
                        "group": "cert-manager.io",
                    },
                },
            }
        )
    if portal.ingress.enabled:
        ingress_spec: Manifest = {
            "tls": [{"hosts": [portal.hostname], "secretName": secret}],
            "rules": [
                {
                    "host": portal.hostname,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": f"{name}-portal",
                                        "port": {"name": "http"},
                                    }
                                },
                            }
                        ]
                    },
                }
            ],
        }
        if portal.ingress.class_name is not None:
            ingress_spec = {"ingressClassName": portal.ingress.class_name, **ingress_spec}
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": f"{name}-portal", **meta},
                "spec": ingress_spec,
            }
        )
    return objects


def first_admin_secret(name: str, namespace: str, email: str, password: str) -> Manifest:
    """Made once (never rotated by a reconcile): the portal creates this administrator
    on an empty database; the admin reads it with the command NOTES.txt prints."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": first_admin_secret_name(name), "namespace": namespace},
        "type": "Opaque",
        "stringData": {"email": email, "password": password},
    }


def secret_key_secret(name: str, namespace: str, key: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_key_secret_name(name), "namespace": namespace},
        "type": "Opaque",
        "stringData": {"key": key},
    }
