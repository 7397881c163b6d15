"""Send the report to marketing and sales staff: a short plain-text summary with the HTML file attached.

Attached rather than inlined: mail clients strip styles and scripts and many do not render inline SVG, while
the attached file opens in any browser exactly as on disk. These are internal operational mails to staff
(setting ``report_recipients``), never to customers, so no consent or suppression rules apply.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from smarketing_tasks.marts.headline import Headline
from smarketing_tasks.outreach.channels import SmtpParams


def recipients(setting: str) -> list[str]:
    return [address.strip() for address in setting.split(",") if address.strip()]


def report_email(report: Path, headline: Headline | None, as_of: datetime, sender: str,
                 to: list[str]) -> EmailMessage:
    """The report as an email: subject with the two numbers to act on, summary in the body, file attached."""
    if not to:
        raise ValueError("no recipients for the report email")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Message-ID"] = make_msgid(idstring=f"report-{as_of:%Y%m%d%H%M}", domain="smarketing.local")
    lines = [f"smarketing-loop report for {as_of:%Y-%m-%d %H:%M} UTC (the HTML file is attached).", ""]
    if headline is None:
        message["Subject"] = f"smarketing-loop report {as_of:%Y-%m-%d}: no marts yet"
        lines.append("The marts have not been published yet.")
    else:
        nps = "n/a" if headline.nps is None else f"{headline.nps:+.0f}"
        message["Subject"] = (f"smarketing-loop report {as_of:%Y-%m-%d}: NPS {nps}, "
                              f"{headline.follow_ups_waiting:,} follow-ups waiting")
        lukewarm = "n/a" if headline.lukewarm_share is None else f"{headline.lukewarm_share:.0%}"
        at_risk = "n/a" if headline.word_of_mouth_at_risk is None else f"{headline.word_of_mouth_at_risk:,}"
        lines += [f"Customers scored:              {headline.customers_scored:,}",
                  f"NPS:                           {nps}",
                  f"Champions and advocates:       {headline.advocates:,}",
                  f"Lukewarm share:                {lukewarm}",
                  f"Word-of-mouth reach at risk:   {at_risk} people",
                  f"Follow-ups waiting:            {headline.follow_ups_waiting:,}",
                  f"Testimonials ready:            {headline.testimonials:,}"]
    message.set_content("\n".join(lines) + "\n")
    message.add_attachment(report.read_text(encoding="utf-8"), subtype="html", charset="utf-8", cte="base64",
                           filename=report.name)
    return message


def send_report(params: SmtpParams, message: EmailMessage) -> None:
    """Deliver ``message`` through the SMTP server of the ``smarketing_smtp`` connection."""
    if params.from_email:
        message.replace_header("From", params.from_email)
    context = ssl.create_default_context()
    client = (smtplib.SMTP_SSL(params.host, params.port, timeout=params.timeout, context=context) if params.use_ssl
              else smtplib.SMTP(params.host, params.port, timeout=params.timeout))
    with client:
        if params.starttls:
            client.starttls(context=context)
        if params.login:
            client.login(params.login, params.password or "")
        client.send_message(message)
