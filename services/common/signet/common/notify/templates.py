"""Message texts in Chinese, English and Spanish, chosen per recipient.

Plain `string.Template` texts: a notification is a few lines, and placeholders are
substituted, never evaluated, so a title or a name cannot inject anything.  E-mail
and SMS share the wording; an SMS is the subject's short form plus the link or code.
"""

from __future__ import annotations

from enum import StrEnum
from string import Template

LOCALES = ("zh-CN", "en", "es")
DEFAULT_LOCALE = "en"


class Notice(StrEnum):
    IDENTITY_CODE = "identity_code"  # opening a link: who are you?
    INTENT_CODE = "intent_code"  # the signer's activation code: do you sign this?
    YOUR_TURN = "your_turn"
    REMINDER = "reminder"
    COPY = "copy"
    COMPLETED = "completed"
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"
    LOCKED = "locked"  # to the sender: a recipient failed the identity check too often


_T = dict[Notice, tuple[str, str]]  # subject, body

_EN: _T = {
    Notice.IDENTITY_CODE: (
        "Your Signet verification code",
        "Your code to open “$title” is $code. It expires in $minutes minutes. "
        "Signet will never ask you for it by phone.",
    ),
    Notice.INTENT_CODE: (
        "Confirm your signature",
        "Your code to sign “$title” is $code (document $digest). It expires in "
        "$minutes minutes. Do not share it: it is your signature.",
    ),
    Notice.YOUR_TURN: ("$sender asks you to sign “$title”", "$message\n\nOpen: $link"),
    Notice.REMINDER: ("Reminder: “$title” is waiting for you", "$message\n\nOpen: $link"),
    Notice.COPY: ("A copy of “$title”", "$sender sent you a copy of “$title”: $link"),
    Notice.COMPLETED: (
        "“$title” is complete",
        "Every party has signed “$title”. Download the signed documents: $link",
    ),
    Notice.DECLINED: ("“$title” was declined", "$actor declined “$title”: $reason"),
    Notice.VOIDED: ("“$title” was withdrawn", "$sender withdrew “$title”: $reason"),
    Notice.EXPIRED: ("“$title” expired", "The deadline of “$title” passed before it was signed."),
    Notice.LOCKED: (
        "A recipient of “$title” is locked",
        "$actor failed the identity check of “$title” too many times; their link is locked.",
    ),
}

_ZH: _T = {
    Notice.IDENTITY_CODE: (
        "Signet 验证码",
        "您查看《$title》的验证码为 $code，$minutes 分钟内有效。"
        "Signet 不会通过电话向您索取验证码。",
    ),
    Notice.INTENT_CODE: (
        "确认签署",
        "您签署《$title》的验证码为 $code（文件摘要 $digest），$minutes 分钟内有效。"
        "请勿泄露：它代表您的签名意愿。",
    ),
    Notice.YOUR_TURN: ("$sender 邀请您签署《$title》", "$message\n\n打开：$link"),
    Notice.REMINDER: ("提醒：《$title》等待您签署", "$message\n\n打开：$link"),
    Notice.COPY: ("《$title》抄送", "$sender 向您抄送了《$title》：$link"),
    Notice.COMPLETED: ("《$title》已签署完成", "各方均已签署《$title》。下载已签署文件：$link"),
    Notice.DECLINED: ("《$title》已被拒签", "$actor 拒绝签署《$title》：$reason"),
    Notice.VOIDED: ("《$title》已撤回", "$sender 撤回了《$title》：$reason"),
    Notice.EXPIRED: ("《$title》已过期", "《$title》在截止日期前未完成签署。"),
    Notice.LOCKED: (
        "《$title》的签署人已被锁定",
        "$actor 多次未通过《$title》的身份验证，其链接已锁定。",
    ),
}

_ES: _T = {
    Notice.IDENTITY_CODE: (
        "Su código de verificación de Signet",
        "Su código para abrir «$title» es $code. Caduca en $minutes minutos. "
        "Signet nunca se lo pedirá por teléfono.",
    ),
    Notice.INTENT_CODE: (
        "Confirme su firma",
        "Su código para firmar «$title» es $code (documento $digest). Caduca en "
        "$minutes minutos. No lo comparta: es su firma.",
    ),
    Notice.YOUR_TURN: ("$sender le pide firmar «$title»", "$message\n\nAbrir: $link"),
    Notice.REMINDER: ("Recordatorio: «$title» le espera", "$message\n\nAbrir: $link"),
    Notice.COPY: ("Una copia de «$title»", "$sender le envió una copia de «$title»: $link"),
    Notice.COMPLETED: (
        "«$title» está completo",
        "Todas las partes han firmado «$title». Descargue los documentos firmados: $link",
    ),
    Notice.DECLINED: ("«$title» fue rechazado", "$actor rechazó «$title»: $reason"),
    Notice.VOIDED: ("«$title» fue retirado", "$sender retiró «$title»: $reason"),
    Notice.EXPIRED: ("«$title» caducó", "El plazo de «$title» venció antes de firmarse."),
    Notice.LOCKED: (
        "Un destinatario de «$title» está bloqueado",
        "$actor falló la verificación de identidad de «$title» demasiadas veces; su enlace "
        "está bloqueado.",
    ),
}

_TEXTS: dict[str, _T] = {"en": _EN, "zh-CN": _ZH, "es": _ES}


def locale_for(preferred: str | None) -> str:
    """The closest locale we have: exact, then by language (``zh-TW`` → ``zh-CN``, ``es-MX``
    → ``es``), then English."""
    if preferred in _TEXTS:
        return preferred
    language = (preferred or "").split("-")[0].lower()
    for locale in LOCALES:
        if locale.split("-")[0] == language:
            return locale
    return DEFAULT_LOCALE


def render(notice: Notice, locale: str | None, **values: str) -> tuple[str, str]:
    """Subject and body of `notice` in the recipient's language.

    A placeholder without a value stays visible (``$link``) rather than failing the
    message; the tests render every notice in every locale with every value given.
    """
    subject, body = _TEXTS[locale_for(locale)][notice]
    return Template(subject).safe_substitute(values), Template(body).safe_substitute(values)
