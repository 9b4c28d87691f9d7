"""`POST /v1/digests/sign`: other services' evidence (ledger tree heads) signed by an HSM seal.

Only a digest crosses the wire; the key stays in the HSM and is named by its
label, so the storage service holds no key material and needs no HSM.
"""

from __future__ import annotations

import base64

from asn1crypto import pem
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.signer import DigestSignature, DigestSignRequest
from signet.common.errors import InvalidRequest
from signet.signer.api.deps import Service
from signet.signer.service import SignerService

router = APIRouter(prefix="/v1/digests", tags=["seals"])


def _sign(service: SignerService, request: DigestSignRequest) -> DigestSignature:
    # only a key made as the ledger seal signs raw digests (403 key_purpose otherwise)
    issued = service.ca.digest_material(request.key_label)
    if not issued.key.algorithm.is_ec:
        raise InvalidRequest("digest signing needs an EC seal key")
    # through the key, not the HSM directly: its faults count in signet_hsm_errors_total
    signature = issued.key.sign_digest(bytes.fromhex(request.digest), "sha256")
    chain = [issued.certificate, *service.ca.chain()]
    return DigestSignature(
        signature=base64.b64encode(signature).decode(),
        signature_algorithm="sha256_ecdsa",
        certificate_serial=issued.record.serial,
        certificate_chain=[pem.armor("CERTIFICATE", c.dump()).decode() for c in chain],
    )


@router.post("/sign", response_model=DigestSignature)
async def sign_digest(service: Service, request: DigestSignRequest) -> DigestSignature:
    return await run_in_threadpool(_sign, service, request)
