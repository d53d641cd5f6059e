"""Integrations with outside libraries, each imported only when it is used."""
