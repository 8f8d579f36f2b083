"""Send one e-mail over SMTP with the standard library; never raises.

Transient (retry with backoff): connection refused or timed out, SMTP 4xx.
Permanent: SMTP 5xx (bad recipient, refused sender, authentication).
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. application/pdf
    data: bytes


@dataclass(frozen=True)
class EmailResult:
    accepted: bool
    retryable: bool
    message_id: str | None = None
    status_code: int | None = None
    detail: str | None = None


class SmtpSender:
    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password = username, password
        self.starttls, self.timeout = starttls, timeout

    def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> EmailResult:
        """Send one message; ``attachments`` go as MIME parts (a statement's PDF)."""
        if not self.host:
            return EmailResult(False, True, detail="SMTP_HOST not configured")
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message_id = make_msgid(domain=self.sender.rpartition("@")[2] or "localhost")
        message["Message-ID"] = message_id
        message.set_content(body)
        for item in attachments:
            maintype, _, subtype = item.content_type.partition("/")
            message.add_attachment(
                item.data, maintype=maintype, subtype=subtype, filename=item.filename
            )
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0] if exc.recipients else None
            return EmailResult(False, _transient(code), None, code, "recipient refused")
        except smtplib.SMTPResponseException as exc:
            raw = exc.smtp_error
            detail = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw))[:200]
            return EmailResult(False, _transient(exc.smtp_code), None, exc.smtp_code, detail)
        except (smtplib.SMTPException, OSError) as exc:  # OSError covers timeouts
            return EmailResult(False, True, None, None, f"{type(exc).__name__}: {exc}"[:200])
        if refused:
            return EmailResult(False, False, None, None, f"refused: {sorted(refused)}"[:200])
        return EmailResult(True, False, message_id, 250)


def _transient(code: int | None) -> bool:
    return code is None or 400 <= code < 500
