"""PAdES signing (B-B, B-T, B-LT, B-LTA) with HSM keys, orchestrated by pyHanko.

pyHanko builds the CMS, the PDF signature field and the incremental update;
Signet supplies the key (`HsmSigner`), the timestamps (`LocalTimeStamper`, or
an external RFC 3161 TSA) and the revocation data for LTV (our own CRLs,
fetched from the CA in-process, never over the network).

Every call is synchronous and CPU-bound: the API runs it in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from asn1crypto import cms, tsp, x509
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes, Signer
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore
from signet.common.contracts.signer import DocMdpPermission, SignatureLevel, SignOptions
from signet.common.errors import InvalidRequest, ServiceUnavailable, UnprocessableDocument
from signet.signer import der, metrics
from signet.signer.pades import appearance as placed
from signet.signer.pades import fastpdf
from signet.signer.pades.fastcms import (
    CmsTemplate,
    external_timestamp,
    fast_path_applies,
    signature_imprint,
)
from signet.signer.pki.ca import CertificateAuthority, Issued
from signet.signer.pki.keys import HsmKey
from signet.signer.pki.rotation import tsa_certificates
from signet.signer.pki.tsa import TimeStampAuthority

_DOCMDP = {
    DocMdpPermission.NO_CHANGES: fields.MDPPerm.NO_CHANGES,
    DocMdpPermission.FILL_FORMS: fields.MDPPerm.FILL_FORMS,
    DocMdpPermission.ANNOTATE: fields.MDPPerm.ANNOTATE,
}


class HsmSigner(Signer):
    """A pyHanko `Signer` whose raw signatures are made in the HSM.

    With a `CmsTemplate` it builds the CMS from cached DER (see
    `signet.signer.pades.fastcms`) whenever pyHanko would produce exactly the same
    attribute set; otherwise, and without a template, pyHanko builds it.
    """

    def __init__(
        self,
        key: HsmKey,
        certificate: x509.Certificate,
        chain: list[x509.Certificate],
        template: CmsTemplate | None = None,
    ) -> None:
        super().__init__(
            signing_cert=certificate,
            # the signing certificate is added by pyHanko itself; listing it here too
            # would embed it twice
            cert_registry=SimpleCertificateStore.from_certs(chain),  # type: ignore[no-untyped-call]
            signature_mechanism=key.signature_algorithm,
        )
        self.key = key
        self.template = template

    async def async_sign(
        self,
        data_digest: bytes,
        digest_algorithm: str,
        dry_run: bool = False,
        use_pades: bool = False,
        timestamper: TimeStamper | None = None,
        signed_attr_settings: PdfCMSSignedAttributes | None = None,
        is_pdf_sig: bool = True,
        encap_content_info: Any = None,
    ) -> cms.ContentInfo:
        template = self.template
        if (
            template is None
            or digest_algorithm != template.digest_algorithm
            or self.signed_attr_prov_spec is not None
            or self.unsigned_attr_prov_spec is not None
            or not fast_path_applies(
                dry_run=dry_run,
                use_pades=use_pades,
                is_pdf_sig=is_pdf_sig,
                encap_content_info=encap_content_info,
                settings=signed_attr_settings,
            )
        ):
            return await super().async_sign(
                data_digest,
                digest_algorithm,
                dry_run=dry_run,
                use_pades=use_pades,
                timestamper=timestamper,
                signed_attr_settings=signed_attr_settings,
                is_pdf_sig=is_pdf_sig,
                encap_content_info=encap_content_info,
            )
        attributes = template.signed_attributes(data_digest)
        signature = self.key.sign_with(der.set_of(attributes), digest_algorithm)
        token = None
        if isinstance(timestamper, LocalTimeStamper):
            token = timestamper.tsa.stamp(
                signature_imprint(signature, digest_algorithm),
                nonce=secrets.randbits(63),
                include_certs=True,
            )
        elif timestamper is not None:
            token = await external_timestamp(timestamper, signature, digest_algorithm)
        return cms.ContentInfo.load(template.assemble(attributes, signature, token))

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:  # pyHanko sizes the signature container with this
            return bytes(72 if self.key.algorithm.is_ec else 384)
        return self.key.sign_with(data, digest_algorithm)


class LocalTimeStamper(TimeStamper):
    """Timestamps from this appliance's own TSA, in-process (no HTTP round trip)."""

    def __init__(self, tsa: TimeStampAuthority) -> None:
        super().__init__(include_nonce=True)  # type: ignore[no-untyped-call]
        self.tsa = tsa

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return tsp.TimeStampResp.load(self.tsa.respond(req.dump()))


@dataclass(frozen=True)
class PadesEngine:
    ca: CertificateAuthority
    timestamper: TimeStamper
    #: Build CMS from cached DER (`signet.signer.pades.fastcms`); False means pure pyHanko.
    fast_cms: bool = True
    #: Write invisible seals on plain documents directly (`signet.signer.pades.fastpdf`).
    fast_pdf: bool = True
    #: Named external RFC 3161 TSAs a request may pick (name -> URL).
    authorities: Mapping[str, str] = field(default_factory=dict)
    _templates: dict[bytes, CmsTemplate] = field(default_factory=dict, repr=False)
    _templates_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(
        cls,
        ca: CertificateAuthority,
        tsa: TimeStampAuthority,
        external_tsa_url: str | None = None,
        authorities: Mapping[str, str] | None = None,
    ) -> PadesEngine:
        stamper = HTTPTimeStamper(external_tsa_url) if external_tsa_url else LocalTimeStamper(tsa)
        return cls(ca, stamper, authorities=dict(authorities or {}))

    def timestamper_for(self, name: str | None) -> TimeStamper:
        """The TSA a request named (`SignerSettings.timestamp_authorities`); None: ours."""
        if name is None:
            return self.timestamper
        url = self.authorities.get(name)
        if url is None:
            raise TimestampAuthorityUnknown(f"no timestamp authority named {name!r} is configured")
        return HTTPTimeStamper(url, timeout=30)

    def validation_context(self) -> ValidationContext:
        """Trust our root; revocation from our own current CRLs, never fetched.  Every TSA
        certificate is listed, the rolled-over ones too (`signet.signer.pki.rotation`)."""
        return ValidationContext(
            trust_roots=[self.ca.root.certificate],
            other_certs=[self.ca.issuing.certificate, *tsa_certificates(self.ca.registry)],
            crls=self.ca.crls(),
            allow_fetching=False,
            revocation_mode="hard-fail",
        )

    def template(self, issued: Issued, chain: list[x509.Certificate]) -> CmsTemplate:
        """The cached CMS template of a certificate (and the chain it is used with)."""
        cache_key = issued.certificate.dump() + b"".join(c.dump() for c in chain)
        cache_key = hashlib.sha256(cache_key).digest()
        template = self._templates.get(cache_key)
        if template is None:
            template = CmsTemplate.build(issued.key, issued.certificate, chain)
            with self._templates_lock:
                if len(self._templates) > 1024:  # bounded: event certificates are single-use
                    self._templates.clear()
                self._templates[cache_key] = template
        return template

    def sign(
        self, document: bytes, issued: Issued, options: SignOptions, image: bytes | None = None
    ) -> bytes:
        """Return `document` with one more signature, as an incremental update."""
        output = io.BytesIO()
        self.sign_stream(io.BytesIO(document), output, issued, options, image)
        return output.getvalue()

    def sign_stream(
        self,
        source: BinaryIO,
        output: BinaryIO,
        issued: Issued,
        options: SignOptions,
        image: bytes | None = None,
    ) -> None:
        """Write `source` plus one more signature to `output` (seekable, empty).

        Memory stays bounded by the update, not the document: both paths copy the
        original in chunks (a 200 MB contract costs no more RAM than a letter).
        Every call counts in ``signet_signatures_total`` (`signet.signer.metrics`).
        """
        started = time.perf_counter()
        try:
            try:
                self._sign_stream(source, output, issued, options, image)
            except RecursionError as exc:  # [[[[...]]]] x 10 000, a page tree 5 000 deep
                raise UnprocessableDocument("malformed PDF: objects nested too deeply") from exc
        except Exception as exc:
            metrics.signature_failed(options.level, exc)
            raise
        metrics.signature_made(options.level, time.perf_counter() - started)

    def _sign_stream(
        self,
        source: BinaryIO,
        output: BinaryIO,
        issued: Issued,
        options: SignOptions,
        image: bytes | None,
    ) -> None:
        _check_header(source)
        chain = self.ca.chain()
        level = options.level
        reserved = 8192 + sum(len(c.dump()) for c in (issued.certificate, *chain))
        if level is not SignatureLevel.B_B:
            reserved += 6144
        reserved += reserved % 2  # pyHanko wants an even size (hex digits come in pairs)
        timestamper = self.timestamper_for(options.timestamp_authority)
        if (
            self.fast_pdf
            and self.fast_cms
            and options.timestamp_authority is None
            and not options.stamps
            and not options.also_on
            and fastpdf.applies(options, image)
        ):
            local_tsa = (
                self.timestamper.tsa if isinstance(self.timestamper, LocalTimeStamper) else None
            )
            if (level is SignatureLevel.B_B or local_tsa is not None) and fastpdf.seal(
                source,
                output,
                issued,
                options,
                self.template(issued, chain),
                reserved_hex=reserved,
                tsa=local_tsa if level is not SignatureLevel.B_B else None,
            ):
                return
        source.seek(0)
        writer = _open(source)
        existing = {name for name, _, _ in fields.enumerate_sig_fields(writer.prev)}
        field_name = options.field_name or _free_field_name(existing)
        for placement in options.prepare_fields:
            if placement.name in existing or placement.name == field_name:
                raise InvalidRequest(f"a signature field named {placement.name!r} exists")
            fields.append_signature_field(
                writer,
                fields.SigFieldSpec(
                    sig_field_name=placement.name,
                    on_page=_page_index(placement.page),
                    box=_box(placement.rect),
                ),
            )
        signer = HsmSigner(
            issued.key,
            issued.certificate,
            chain,
            self.template(issued, chain) if self.fast_cms else None,
        )
        subject_name = issued.certificate.subject.native.get("common_name", "")
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            reason=options.reason,
            location=options.location,
            name=subject_name,
            md_algorithm=issued.key.digest_algorithm,
            subfilter=fields.SigSeedSubFilter.PADES,
            certify=options.certify,
            docmdp_permissions=_DOCMDP[options.docmdp],
            embed_validation_info=level in (SignatureLevel.B_LT, SignatureLevel.B_LTA),
            use_pades_lta=level is SignatureLevel.B_LTA,
            validation_context=self.validation_context()
            if level in (SignatureLevel.B_LT, SignatureLevel.B_LTA)
            else None,
        )
        field_spec, style = None, None
        if options.appearance is not None:
            appearance = options.appearance
            if field_name not in existing:  # an existing (prepared) field keeps its place
                field_spec = fields.SigFieldSpec(
                    sig_field_name=field_name,
                    on_page=_page_index(appearance.page),
                    box=_box(appearance.rect),
                )
            lines = []
            if appearance.show_name:
                lines.append("Signed by %(signer)s")
            if appearance.show_time:
                lines.append("%(ts)s")
            if appearance.text:
                lines.append(appearance.text.replace("%", "%%"))
            style = placed.SignatureStyle(
                stamp_text="\n".join(lines) or " ",
                timestamp_format="%Y-%m-%d %H:%M:%S UTC",
                border_width=0,
                background=_image(image) if image else None,
                background_opacity=1.0,
                text_box_style=placed.text_box_style(),
            )
            if appearance.text:
                placed.check_text(appearance.text)
        elif image is not None and options.cross_page_seal is None:
            raise InvalidRequest("an image needs an appearance (page and rect)")
        if options.stamps or options.also_on or options.cross_page_seal is not None:
            field_spec, style = placed.prepare_field(
                writer, field_name, existing, options, style,
                image=decoded_image(image) if image else None,
            )  # fmt: skip
        pdf_signer = signers.PdfSigner(
            meta,
            signer=signer,
            timestamper=timestamper if level is not SignatureLevel.B_B else None,
            stamp_style=style,
            new_field_spec=field_spec,
        )
        try:
            pdf_signer.sign_pdf(writer, output=output, bytes_reserved=reserved)
        except SigningError as exc:
            if "timestamp" in str(exc).lower() or "TSA" in str(exc):
                raise ServiceUnavailable(f"timestamp authority failed: {exc}") from exc
            raise UnprocessableDocument(f"cannot sign this PDF: {exc}") from exc
        except PdfReadError as exc:
            raise UnprocessableDocument(f"malformed PDF: {exc}") from exc
        except TimestampRequestError as exc:
            raise ServiceUnavailable(f"timestamp authority failed: {exc}") from exc


def _check_header(source: BinaryIO) -> None:
    source.seek(0)
    head = source.read(1024)
    source.seek(0)
    if not head.lstrip()[:5] == b"%PDF-":
        raise UnprocessableDocument("not a PDF: the file does not start with %PDF-")


def _open(source: BinaryIO) -> IncrementalPdfFileWriter:
    try:
        writer = IncrementalPdfFileWriter(source, strict=False)
    except (PdfReadError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise UnprocessableDocument(f"malformed PDF: {exc}") from exc
    if writer.prev.encrypted:
        raise UnprocessableDocument("encrypted PDF: remove the password protection first")
    return writer


def _page_index(page: int) -> int:
    return page - 1 if page > 0 else page


def _box(rect: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (round(v) for v in rect)
    return x1, y1, x2, y2


def _free_field_name(taken: set[str]) -> str:
    n = 1
    while f"Signature{n}" in taken:
        n += 1
    return f"Signature{n}"


MAX_IMAGE_PIXELS = 16_000_000
"""The appearance image's cap, checked from the header before any pixel is decoded."""


class TimestampAuthorityUnknown(UnprocessableDocument):
    code = "timestamp_authority_unknown"


class ImageTooLarge(UnprocessableDocument):
    code = "image_too_large"


class ImageUnreadable(UnprocessableDocument):
    code = "image_unreadable"


_IMAGE_FORMATS = ("PNG", "JPEG")
_decoded_lock = threading.Lock()
_decoded: dict[str, Any] = {}  # sha256 of the bytes -> decoded PIL image (at most a few)


def check_image(data: bytes) -> tuple[int, int]:
    """The image's (width, height), read from its header only; refuses a bomb or garbage.

    ``Image.open`` is lazy: it parses the header and decodes nothing, so a 100 000 x
    100 000 PNG of a few kilobytes is refused here without allocating its 40 GB.
    """
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # PIL's own guard, a second line behind ours
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS) as picture:
                width, height = picture.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"the signature image is larger than {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageUnreadable("the signature image is not a readable PNG/JPEG") from exc
    if width <= 0 or height <= 0:
        raise ImageUnreadable("the signature image has no pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(
            f"the signature image is {width} x {height} pixels, larger than "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        )
    return width, height


def decoded_image(data: bytes) -> Any:
    """The PIL image of `data`, decoded once per process for the same bytes.

    A batch seals every document with one shared image: its pixels are decoded for the
    first document and reused (``PdfImage`` is made per document; it holds the writer).
    """
    key = hashlib.sha256(data).hexdigest()
    with _decoded_lock:
        cached = _decoded.get(key)
    if cached is not None:
        metrics_decoded[1] += 1
        return cached
    check_image(data)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS)
            picture.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge("the signature image is too large") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageUnreadable("the signature image is not a readable PNG/JPEG") from exc
    metrics_decoded[0] += 1
    with _decoded_lock:
        if len(_decoded) >= 4:
            _decoded.clear()
        _decoded[key] = picture
    return picture


metrics_decoded = [0, 0]
"""[decodes, reuses] of `decoded_image` in this process (tests read it)."""


def _image(png: bytes) -> PdfImage:
    return PdfImage(decoded_image(png))
