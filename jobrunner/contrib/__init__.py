"""Integrations with outside libraries, one module per library; each imports its library
only when used, and names the extra to install when it is missing."""
