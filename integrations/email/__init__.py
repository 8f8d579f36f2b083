"""Staff e-mail over SMTP (smtplib, with a timeout)."""
