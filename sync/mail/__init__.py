"""Email: tracking mailbox messages into the CRM, sending CRM email through the mailbox."""
