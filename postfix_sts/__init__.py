"""postfix-sts: an MTA-STS (RFC 8461) TLS policy daemon for Postfix's smtp_tls_policy_maps."""

__version__ = "0.1.0"
