"""The names in the CA's certificates: its own (root, issuing CA, TSA) and its subjects'.

Every installation's CAs carry the organisation and an installation id, a short random
value made at the key ceremony (`new_installation_id`): two installations, even of one
organisation on one machine, then never issue under the same names, and a validator
cannot mistake one's root, CRL or OCSP for the other's.  The id is kept in the root
certificate itself (the X.520 ``serialNumber`` attribute of its subject, and for people
in the common name), so later certificates (a TSA rollover) read it from there
(`installation_of`) and an installation made before the id existed keeps its names:
nothing is recomputed for certificates already issued.
"""

from __future__ import annotations

import secrets

from asn1crypto import x509
from signet.common.contracts.signer import SubjectIdentity

#: Hex digits of an installation id (32 bits: a clash between two installations a
#: validator meets is not a practical concern; it is a name, not a secret).
INSTALLATION_ID_LENGTH = 8


def new_installation_id() -> str:
    """A fresh installation id, upper-case hex (made once, at the ceremony)."""
    return secrets.token_hex(INSTALLATION_ID_LENGTH // 2).upper()


def installation_of(certificate: x509.Certificate) -> str | None:
    """The installation id in a CA certificate's subject; None for one made before ids."""
    value = certificate.subject.native.get("serial_number")
    return value if isinstance(value, str) and value else None


def ca_name(
    role: str, organization: str, installation: str | None, country: str | None = None
) -> x509.Name:
    """One of this installation's own names: ``CN=<organisation> <role> <id>``, with the
    organisation (O) and the id (serialNumber) as attributes of their own."""
    common_name = f"{organization} {role}" + (f" {installation}" if installation else "")
    attrs = {"common_name": common_name[:64], "organization_name": organization}
    if installation:
        attrs["serial_number"] = installation
    if country:
        attrs["country_name"] = country
    return x509.Name.build(attrs)


def subject_name(subject: SubjectIdentity) -> x509.Name:
    """A certificate subject as the issuance request names it."""
    name: dict[str, str] = {"common_name": subject.common_name}
    if subject.organization:
        name["organization_name"] = subject.organization
    if subject.organizational_unit:
        name["organizational_unit_name"] = subject.organizational_unit
    if subject.country:
        name["country_name"] = subject.country
    if subject.email:
        name["email_address"] = subject.email
    return x509.Name.build(name)
