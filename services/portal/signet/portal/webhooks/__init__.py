"""Webhooks: an organisation's subscriptions, and every envelope and recipient step
delivered to them as signed JSON, through the jobs table (`signet.portal.jobs`)."""
