"""The custom resources `Appliance` and `SigningPolicy` (group signet.dev, v1alpha1).

One source of truth: the operator generates the CRDs' OpenAPI schemas from
these models (`signet operator crds`), the operator validates what it reads
with them, and the services validate policy files with the same models in the
embedded default.  Field names are camelCase on the wire, as Kubernetes wants.

Secrets never appear inline: the HSM PIN, object-store keys and database URL
are `SecretRef`s (a Secret's name and key), and a plain string where a
reference belongs is refused by the schema.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from signet.common.contracts.signer import SignatureLevel
from signet.common.contracts.storage import MINIMUM_RETENTION_YEARS

GROUP = "signet.dev"
#: A host name or address, optionally with a port: what NetworkPolicies are built from.
HOST_PORT = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"
VERSION = "v1alpha1"

DnsLabel = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
RetentionYears = Annotated[
    int,
    Field(
        ge=MINIMUM_RETENTION_YEARS,
        le=100,
        description=f"years every document and evidence record is kept; at least "
        f"{MINIMUM_RETENTION_YEARS} (the statutory minimum)",
    ),
]


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class SecretRef(_Spec):
    """A key of a Secret in the Appliance's namespace."""

    name: DnsLabel
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class Resources(_Spec):
    cpu: str = Field(default="500m", pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str = Field(default="512Mi", pattern=r"^[0-9]+(Ki|Mi|Gi)$")


class ComponentSpec(_Spec):
    replicas: int = Field(default=2, ge=0, le=20)
    resources: Resources = Field(default_factory=Resources)


class VolumeAccessMode(StrEnum):
    """How many nodes may mount a volume at once (a PersistentVolumeClaim's access mode)."""

    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_WRITE_MANY = "ReadWriteMany"


#: A Kubernetes object name that may contain dots (StorageClass, PersistentVolumeClaim).
DnsSubdomain = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]


class BatchStorageSpec(_Spec):
    """The signer's volume for batch uploads and signed results (their rows are in the
    database), claimed once as `<appliance>-signer-batches` and never deleted by the
    operator, not even with the Appliance: it holds signed documents."""

    size: str = Field(
        default="10Gi",
        pattern=r"^[0-9]+(Mi|Gi|Ti)$",
        description="requested capacity of the claim, e.g. 50Gi (uploads wait here until "
        "sealed, results stay); fixed once the claim exists",
    )
    storage_class_name: DnsSubdomain | None = Field(
        default=None,
        description="StorageClass of the claim; absent: the cluster's default class. Prefer "
        "one with reclaimPolicy Retain: deleting the claim then keeps the documents",
    )
    access_mode: VolumeAccessMode | None = Field(
        default=None,
        description="ReadWriteMany (NFS, CephFS and the like) is required with more than "
        "one signer replica, since any replica may take or serve any batch; absent: "
        "ReadWriteMany with more than one replica, ReadWriteOnce otherwise",
    )
    claim_name: DnsSubdomain | None = Field(
        default=None,
        description="an existing PersistentVolumeClaim to use instead (the operator then "
        "creates none; size and storageClassName are ignored), e.g. to move batches to a "
        "ReadWriteMany volume",
    )


class TimeSpec(_Spec):
    """The signer's TSA clock (docs/admin/time.md): the accuracy its tokens claim and
    what it is checked against before every stamp."""

    accuracy_ms: int = Field(
        default=500,
        ge=1,
        le=60_000,
        description="the accuracy every token claims (TSTInfo.accuracy, milliseconds); "
        "stamps are refused while the clock cannot show it",
    )
    references: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default_factory=list,
        max_length=8,
        description="NTP servers (host or host:port) the clock is cross-checked against; "
        "empty: the node's kernel status alone",
    )
    trust: Literal["kernel", "trusted-host"] = Field(
        default="kernel",
        description="kernel: stamp only while the node's kernel says the clock is "
        "synchronised within the accuracy; trusted-host: take it unchecked (trials only)",
    )


class SignerComponentSpec(ComponentSpec):
    """The signer's pods, and the volume their batch documents live on."""

    model_config = ConfigDict(
        **_Spec.model_config,
        json_schema_extra={
            # The same rule as `_shared_batches`, for the API server (CEL).  "not
            # ReadWriteOnce", not "== ReadWriteMany": the field is nullable, so an explicit
            # `accessMode: null` is kept (has() is true) and means "derived", as in pydantic.
            "x-kubernetes-validations": [
                {
                    "rule": "self.replicas <= 1 || !has(self.batchStorage)"
                    " || !has(self.batchStorage.accessMode)"
                    " || self.batchStorage.accessMode != 'ReadWriteOnce'",
                    "message": "more than one signer replica needs "
                    "batchStorage.accessMode: ReadWriteMany",
                }
            ]
        },
    )

    batch_storage: BatchStorageSpec = Field(default_factory=BatchStorageSpec)
    time: TimeSpec = Field(default_factory=TimeSpec)

    @property
    def batch_access_mode(self) -> VolumeAccessMode:
        """The access mode the batch claim is created with (see `BatchStorageSpec`)."""
        if self.batch_storage.access_mode is not None:
            return self.batch_storage.access_mode
        if self.replicas > 1:
            return VolumeAccessMode.READ_WRITE_MANY
        return VolumeAccessMode.READ_WRITE_ONCE

    @model_validator(mode="after")
    def _shared_batches(self) -> SignerComponentSpec:
        if self.replicas > 1 and self.batch_access_mode is not VolumeAccessMode.READ_WRITE_MANY:
            raise ValueError(
                f"{self.replicas} signer replicas share their batches: "
                "batchStorage.accessMode must be ReadWriteMany (a volume every node can "
                "mount), or signer.replicas 0 or 1"
            )
        return self


class StorageComponentSpec(ComponentSpec):
    """One storage pod: every storage process appends to the evidence ledger, which has
    exactly one writer (a second one finds its segment names taken and stops).  More
    replicas need appends routed to the Lease holder, which is not built yet."""

    replicas: int = Field(
        default=1, ge=0, le=1, description="0 or 1: the evidence ledger has one writer"
    )


class HsmSpec(_Spec):
    """Where the PKCS#11 module comes from: the vendor's image, or SoftHSM for trials."""

    model_config = ConfigDict(
        **_Spec.model_config,
        json_schema_extra={
            # The same rule as the validator below, for the API server (CEL).
            "x-kubernetes-validations": [
                {
                    "rule": "self.softhsm ? !has(self.moduleImage) && !has(self.modulePath)"
                    " : has(self.moduleImage) && has(self.modulePath) && has(self.pin)",
                    "message": "give softhsm: true, or moduleImage, modulePath and pin",
                }
            ]
        },
    )

    softhsm: bool = Field(
        default=False, description="development token from the Signet SoftHSM image (trials only)"
    )
    module_image: str | None = Field(
        default=None,
        description="image holding the vendor's PKCS#11 library (copied by an init container)",
    )
    module_path: str | None = Field(
        default=None, pattern=r"^/", description="path of the library inside module_image"
    )
    config_map: DnsLabel | None = Field(
        default=None, description="ConfigMap with the vendor's client configuration files"
    )
    token_label: str = Field(
        default="signet", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$"
    )
    pin: SecretRef | None = Field(default=None, description="Secret key holding the user PIN")
    endpoint: str | None = Field(
        default=None,
        max_length=253,
        pattern=HOST_PORT,
        description="host:port of a network HSM; the NetworkPolicy lets only the signer reach it",
    )

    @model_validator(mode="after")
    def _module_or_softhsm(self) -> HsmSpec:
        if self.softhsm:
            if self.module_image or self.module_path:
                raise ValueError("give either softhsm or a vendor module, not both")
        else:
            if not (self.module_image and self.module_path):
                raise ValueError("a vendor HSM needs moduleImage and modulePath (or softhsm: true)")
            if self.pin is None:
                raise ValueError("a vendor HSM needs pin: a Secret reference")
        return self


class ObjectStoreSpec(_Spec):
    """An existing MinIO (or other S3 with Object Lock); the operator never touches its data."""

    endpoint: str = Field(
        min_length=1,
        max_length=253,
        pattern=HOST_PORT,
        description="host:port of the S3 endpoint (no scheme: see `secure`)",
    )
    bucket: str = Field(default="signet", min_length=3, max_length=63)
    secure: bool = True
    access_key: SecretRef
    secret_key: SecretRef
    retention_years: RetentionYears = 10


class DatabaseSpec(_Spec):
    """PostgreSQL: required in a cluster.  The signer's registry (CA certificates,
    revocations, TSA serial numbers, batches) must outlive pods and be shared by
    replicas; a pod's own SQLite file would be lost at every restart, and two
    replicas would hand out the same timestamp serials."""

    url: SecretRef = Field(description="Secret key holding the SQLAlchemy URL (PostgreSQL)")


#: A label key as Kubernetes accepts it: an optional DNS-subdomain prefix and a name.
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LabelValue = Annotated[
    str, Field(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
]


class LabelSelector(_Spec):
    """Labels a Kubernetes object must carry (all of them); empty: every object."""

    match_labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=20)

    @model_validator(mode="after")
    def _label_keys(self) -> LabelSelector:
        for key in self.match_labels:
            name = key.rsplit("/", 1)[-1]
            if len(key) > 253 + 1 + 63 or len(name) > 63 or not re.match(LABEL_KEY, key):
                raise ValueError(f"matchLabels: {key[:80]!r} is not a Kubernetes label key")
        return self


class ScraperSpec(_Spec):
    """Who may reach the services' metrics port (a NetworkPolicy peer, with the same
    meaning): the pods matching `podSelector` in the namespaces matching
    `namespaceSelector`.  Only the metrics port opens to them, never the API port."""

    model_config = ConfigDict(
        **_Spec.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.namespaceSelector) || has(self.podSelector)",
                    "message": "give namespaceSelector, podSelector or both",
                }
            ]
        },
    )

    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="namespaces of the scraper (e.g. kubernetes.io/metadata.name: monitoring); "
        "absent: the Appliance's own namespace; empty matchLabels: every namespace",
    )
    pod_selector: LabelSelector | None = Field(
        default=None,
        description="pods of the scraper (e.g. app.kubernetes.io/name: prometheus); "
        "absent: every pod of the selected namespaces",
    )

    @model_validator(mode="after")
    def _some_selector(self) -> ScraperSpec:
        if self.namespace_selector is None and self.pod_selector is None:
            raise ValueError("a scraper needs namespaceSelector, podSelector or both")
        return self


class MetricsSpec(_Spec):
    """Prometheus: every service serves `/metrics` (and nothing else) on its own port."""

    scraper: ScraperSpec | None = Field(
        default=None,
        description="who may scrape the metrics ports; absent: no one (the NetworkPolicies "
        "admit only the services' peers and the operator, to the API ports alone)",
    )


class PortalTlsSpec(_Spec):
    """The portal's certificate: a Secret the admin keeps, or one cert-manager issues."""

    secret_name: DnsSubdomain | None = Field(
        default=None,
        description="a kubernetes.io/tls Secret (tls.crt, tls.key) for the hostname; with "
        "certManager it is the Secret cert-manager writes (default <name>-portal-tls)",
    )
    cert_manager_issuer: DnsSubdomain | None = Field(
        default=None,
        description="cert-manager issues the certificate (a Certificate for the hostname); "
        "absent: the admin provides secretName",
    )
    issuer_kind: Literal["ClusterIssuer", "Issuer"] = "ClusterIssuer"


class PortalIngressSpec(_Spec):
    """How the cluster exposes intranet sites: an Ingress of a class, or none (the admin
    routes to the `<name>-portal` Service themselves)."""

    enabled: bool = True
    class_name: DnsSubdomain | None = Field(
        default=None, description="ingressClassName; absent: the cluster's default class"
    )
    controller_namespace: LabelSelector = Field(
        default_factory=lambda: LabelSelector(
            match_labels={"kubernetes.io/metadata.name": "ingress-nginx"}
        ),
        description="the ingress controller's namespaces: the only ones (with the "
        "operator) that may reach the portal's API port",
    )


class PortalSmtpSpec(_Spec):
    """The mail relay for invitations, codes and notices (and the signer's activation
    codes when `signerChannels`)."""

    host: str = Field(
        min_length=1, max_length=253, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"
    )
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    credentials: DnsLabel | None = Field(
        default=None,
        description="a Secret with keys username and password (JSON-string-safe characters)",
    )


class PortalSmsSpec(_Spec):
    """The SMS gateway (Twilio-compatible REST)."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=500)
    sender: str = Field(min_length=1, max_length=32)
    credentials: DnsLabel = Field(description="a Secret with keys account-sid and auth-token")


class OidcSpec(_Spec):
    """Single sign-on for staff: the IdP, the portal's client, and group-to-role mapping."""

    issuer: str = Field(pattern=r"^https://[^\s]+$", max_length=500)
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretRef
    group_roles: dict[str, Literal["admin", "sender", "auditor"]] = Field(
        default_factory=dict, max_length=50, description="IdP group -> portal role"
    )

    @model_validator(mode="after")
    def _group_names(self) -> OidcSpec:
        """Checked here, not in the schema: a CRD's structural schema has no propertyNames."""
        for group in self.group_roles:
            if not 1 <= len(group) <= 128:
                raise ValueError(
                    f"groupRoles: a group name has 1 to 128 characters ({group[:40]!r})"
                )
        return self


class EgressPeer(_Spec):
    """A destination the portal (or the signer's channels) may leave for: CIDRs or
    namespaces, on the listed TCP ports."""

    cidrs: list[Annotated[str, Field(pattern=r"^[0-9a-fA-F.:]+/[0-9]{1,3}$")]] = Field(
        default_factory=list, max_length=20
    )
    namespace_selector: LabelSelector | None = None
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _somewhere(self) -> EgressPeer:
        if not self.cidrs and self.namespace_selector is None:
            raise ValueError("an egress peer needs cidrs or namespaceSelector")
        return self


class PortalSpec(_Spec):
    """The contract portal: the one component reachable from outside the namespace."""

    model_config = ConfigDict(
        **_Spec.model_config,
        json_schema_extra={
            # The same rule as `_installable`, for the API server (CEL).
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.enabled) || !self.enabled"
                    " || (has(self.hostname) && has(self.database))",
                    "message": "an enabled portal needs hostname and database",
                }
            ]
        },
    )

    enabled: bool = False
    replicas: int = Field(default=2, ge=0, le=20)
    resources: Resources = Field(default_factory=Resources)
    hostname: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )
    tls: PortalTlsSpec = Field(default_factory=PortalTlsSpec)
    ingress: PortalIngressSpec = Field(default_factory=PortalIngressSpec)
    database: SecretRef | None = Field(
        default=None, description="Secret key holding the portal's PostgreSQL URL"
    )
    smtp: PortalSmtpSpec | None = None
    sms: PortalSmsSpec | None = None
    oidc: OidcSpec | None = None
    signer_channels: bool = Field(
        default=True,
        description="the signer sends its activation codes through the same SMTP/SMS",
    )
    egress: list[EgressPeer] = Field(
        default_factory=list,
        max_length=20,
        description="where mail, SMS, the IdP and webhooks are: the portal may leave for "
        "these alone (and DNS, signer, storage, PostgreSQL)",
    )
    first_admin_email: str = Field(
        default="admin@example.com", pattern=r"^[^@\s]+@[^@\s]+$", max_length=254
    )

    @model_validator(mode="after")
    def _installable(self) -> PortalSpec:
        if self.enabled and (self.hostname is None or self.database is None):
            raise ValueError("an enabled portal needs hostname and database (a Secret key)")
        return self


class ApplianceSpec(_Spec):
    model_config = ConfigDict(
        **_Spec.model_config,
        json_schema_extra={
            # The same rule as `_softhsm_is_one_signer`, for the API server (CEL).
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.hsm.softhsm) || !self.hsm.softhsm || !has(self.signer)"
                    " || !has(self.signer.replicas) || self.signer.replicas <= 1",
                    "message": "hsm.softhsm keeps its token on one volume: signer.replicas <= 1",
                }
            ]
        },
    )

    image: str = Field(default="signet:0.1.0", description="the signet image (every component)")
    organization: str = Field(default="Signet", min_length=1, max_length=64)
    public_url: str = Field(
        description="URL validators reach for CRL/OCSP/TSA; baked into certificates",
        pattern=r"^https?://",
    )
    signer: SignerComponentSpec = Field(default_factory=SignerComponentSpec)
    storage: StorageComponentSpec = Field(default_factory=StorageComponentSpec)
    portal: PortalSpec = Field(default_factory=PortalSpec)
    hsm: HsmSpec
    object_store: ObjectStoreSpec
    database: DatabaseSpec
    tree_head_interval_seconds: int = Field(default=60, ge=10, le=86400)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)

    @model_validator(mode="before")
    @classmethod
    def _softhsm_defaults_to_one_signer(cls, data: Any) -> Any:
        """A trial spec (`hsm: {softhsm: true}`) without a signer section gets one signer,
        as the API server does (the section is absent, so no replicas default applies)."""
        if isinstance(data, dict) and "signer" not in data:
            hsm = data.get("hsm")
            if isinstance(hsm, dict) and hsm.get("softhsm"):
                return {**data, "signer": {"replicas": 1}}
        return data

    @model_validator(mode="after")
    def _softhsm_is_one_signer(self) -> ApplianceSpec:
        if self.hsm.softhsm and self.signer.replicas > 1:
            raise ValueError(
                "hsm.softhsm keeps its token in files on one volume: signer.replicas must be "
                "0 or 1 (use a vendor HSM for more)"
            )
        return self


class Appliance(_Spec):
    api_version: Literal["signet.dev/v1alpha1"] = "signet.dev/v1alpha1"
    kind: Literal["Appliance"] = "Appliance"
    spec: ApplianceSpec


class IdentityCheck(StrEnum):
    """How a recipient proves who they are before the document is shown."""

    OTP_EMAIL = "otp-email"
    OTP_SMS = "otp-sms"
    SSO = "sso"
    NONE = "none"


class IntentCheck(StrEnum):
    """How a signer confirms, at the moment of signing, that they mean to sign."""

    OTP_EMAIL = "otp-email"
    OTP_SMS = "otp-sms"
    PASSWORD = "password"  # noqa: S105 - the name of a method, not a secret


class PolicyKeyAlgorithm(StrEnum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"


class PolicyCertificateKind(StrEnum):
    """`event`: a key made in the HSM for one signing (external signers);
    `long-term`: the employee's or seal's own certificate."""

    EVENT = "event"
    LONG_TERM = "long-term"


class Routing(StrEnum):
    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"


KeyLabel = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
GroupName = Annotated[str, Field(min_length=1, max_length=128)]


class SealGrant(_Spec):
    """A company seal this policy lets some people apply."""

    key_label: KeyLabel = Field(description="the seal's key in the HSM")
    allowed_groups: list[GroupName] = Field(
        min_length=1, max_length=50, description="directory groups whose members may apply it"
    )
    approval_required: bool = Field(
        default=True, description="each use needs an approver's consent first"
    )


class PolicyScope(_Spec):
    """Which envelopes the policy governs; empty lists match everything."""

    groups: list[GroupName] = Field(default_factory=list, max_length=50)
    document_types: list[str] = Field(default_factory=list, max_length=50)


class SigningPolicySpec(_Spec):
    """How contracts under this policy are signed; versioned by `metadata.generation`."""

    description: str = Field(default="", max_length=500)
    applies_to: PolicyScope = Field(default_factory=PolicyScope)
    level: SignatureLevel = Field(
        default=SignatureLevel.B_LTA, description="PAdES level of the finished document"
    )
    key_algorithm: PolicyKeyAlgorithm = PolicyKeyAlgorithm.EC_P256
    certificate_kind: PolicyCertificateKind = PolicyCertificateKind.EVENT
    identity_checks: list[IdentityCheck] = Field(
        default_factory=lambda: [IdentityCheck.OTP_EMAIL],
        min_length=1,
        max_length=3,
        description="accepted ways to open the document (any one suffices)",
    )
    intent_checks: list[IntentCheck] = Field(
        default_factory=lambda: [IntentCheck.OTP_EMAIL],
        min_length=1,
        max_length=3,
        description="accepted ways to confirm a signature at the moment of signing",
    )
    seals: list[SealGrant] = Field(default_factory=list, max_length=20)
    routing: Routing = Routing.SEQUENTIAL
    max_signers: int = Field(default=10, ge=1, le=100)
    link_validity_days: int = Field(default=14, ge=1, le=365)
    deadline_days: int | None = Field(
        default=None, ge=1, le=365, description="envelopes expire this many days after sending"
    )
    reminder_days: list[Annotated[int, Field(ge=1, le=365)]] = Field(
        default_factory=lambda: [3, 7],
        max_length=10,
        description="days after sending on which a pending signer is reminded",
    )
    timestamp_authority: str | None = Field(
        default=None,
        # no user:password@ in the URL: policies are published in a ConfigMap and Events
        pattern=r"^https?://[^@/\s]+(/\S*)?$",
        description="an external RFC 3161 TSA URL; absent: the appliance's own TSA",
    )
    retention_years: RetentionYears = 10
    certify_first_signature: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> SigningPolicySpec:
        if self.deadline_days is not None and self.deadline_days < self.link_validity_days:
            raise ValueError("deadlineDays must not be shorter than linkValidityDays")
        if self.deadline_days is not None and any(
            d >= self.deadline_days for d in self.reminder_days
        ):
            raise ValueError("every reminder must fall before the deadline")
        return self


class SigningPolicy(_Spec):
    api_version: Literal["signet.dev/v1alpha1"] = "signet.dev/v1alpha1"
    kind: Literal["SigningPolicy"] = "SigningPolicy"
    spec: SigningPolicySpec
