"""Admission: from an inbound message to a durable submission and its verdict."""
